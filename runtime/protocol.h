/* protocol.h — the version of the EDGEDI wire protocol (proto/edgedi.proto).
 *
 * Both peers send it: the agent in RegisterAgent, each side in the Hello
 * that opens an Execute stream, a client in InferRequest. A peer speaking
 * another version is refused with FAILED_PRECONDITION and a message naming
 * both versions ("agent speaks protocol v1, scheduler v2"). Bump it on any
 * change of the messages' meaning that an older peer would misread.
 */
#ifndef EDGEDI_PROTOCOL_H
#define EDGEDI_PROTOCOL_H

#define EDGEDI_PROTOCOL_VERSION 1

#endif
