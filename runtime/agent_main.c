/* agent_main.c — edgedi-agent: one device of an EdgeDI cluster.
 *
 * Serves the Agent service (agent.h) and, given --scheduler, registers with
 * the scheduler and keeps registering whenever it has no live Execute
 * stream. The first line on stdout is machine-readable:
 *   edgedi-agent listening on 127.0.0.1:43211
 * (the bound port, also when --listen asked for port 0); logs go to
 * stderr. SIGINT / SIGTERM stop it cleanly: registration stops, the server
 * ends its calls (a grace period, then cancels) and every thread is joined.
 *
 * --speed-file PATH changes the emulated speed at run time (a board that
 * throttles, or recovers): main reads the file every SIGNAL_POLL_MS and,
 * when it holds a positive number other than the speed now, the agent
 * takes it from its next job on (agent_set_speed). An absent or empty
 * file changes nothing; anything else is logged once and ignored. E.g.
 *   echo 0.05 > /tmp/a1.speed    # half a Pi 3B+
 *
 * Exit status: 0 after a signal; 2 for bad flags (with the usage); 1 when
 * it cannot start (port taken, ...); 3 when the scheduler refused it and
 * --exit-on-refusal was given.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/agent.h"
#include "runtime/link.h"
#include "runtime/resident.h"
#include "runtime/rpc.h"

enum {
  SHUTDOWN_GRACE_MS = 2000,   /* running calls get this long to finish */
  SIGNAL_POLL_MS = 200,       /* how often main looks at the agent */
  MAX_MESSAGE_MB_LIMIT = 2047, /* gRPC's limits are ints of bytes */
  /* What a model's live strips, the idle ones of the strip cache (128 MB,
   * tile.h) and the executor's memory cache (128 MB, xexec_mem.h) take at
   * most (vgg16 alone: 253 MB at its peak without them), so that an agent
   * rarely touches a fresh page once up (resident.h). */
  DEFAULT_RESIDENT_MB = 512,
  MAX_RESIDENT_MB = 16384,
  EXIT_USAGE = 2,
  EXIT_REFUSED = 3,
};

static const char usage_text[] =
    "usage: edgedi-agent [flags]\n"
    "  --listen ADDR        address to serve on (default 127.0.0.1:0: any free\n"
    "                       port; the first stdout line names the bound one)\n"
    "  --scheduler ADDR     register with the scheduler there (default: do not)\n"
    "  --advertise ADDR     address the scheduler should call (default: the\n"
    "                       listen address, the host name for 0.0.0.0 / [::])\n"
    "  --name NAME          device name (default HOSTNAME:PORT)\n"
    "  --threads N          executor threads (default 1; use 1 with --speed < 1)\n"
    "  --speed S            emulate a device S times as fast as one core here\n"
    "                       (default 1; 0.1 ~ Raspberry Pi 3B+, 0.15 ~ Pi 4B)\n"
    "  --speed-file PATH    re-read the speed from PATH while running (a number;\n"
    "                       absent or empty: keep the speed)\n"
    "  --share-cores N      this host's N cores are shared with other emulated\n"
    "                       agents: at most N of them compute at once, taking\n"
    "                       turns instead of time-slicing (lock files in\n"
    "                       $TMPDIR or /tmp; default 0: no sharing)\n"
    "  --whole-strips       compute each strip in one pass and send the rows\n"
    "                       neighbours need after it (default: those rows first)\n"
    "  --link-mbps M        emulate a link of M Mbit/s (default 0: unlimited)\n"
    "  --link-rtt-ms R      emulate a link round trip of R ms (default 0)\n"
    "  --max-message-mb N   gRPC message size limit (default 64)\n"
    "  --resident-mb N      keep N MB of heap resident from the start and never\n"
    "                       give memory back to the system, so that inference\n"
    "                       does not wait on page faults (default 512; 0: glibc's\n"
    "                       defaults)\n"
    "  --log-level L        error, warn, info (default) or debug\n"
    "  --exit-on-refusal    exit (status 3) when the scheduler refuses this\n"
    "                       agent (name taken, old protocol) instead of\n"
    "                       retrying every 10 s\n"
    "  --help               this text\n";

static void usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "edgedi-agent: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n%s", usage_text);
  va_end(ap);
  exit(EXIT_USAGE);
}

static const char *const level_names[] = {"error", "warn", "info", "debug"};

static void log_line(void *ctx, agent_log_level level, const char *msg) {
  int max = *(const int *)ctx;
  if ((int)level > max) return;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  localtime_r(&ts.tv_sec, &tm);
  char when[32];
  strftime(when, sizeof when, "%H:%M:%S", &tm);
  /* One fprintf per line: stdio locks the stream, so threads do not mix. */
  fprintf(stderr, "%s.%03ld edgedi-agent %s: %s\n", when, ts.tv_nsec / 1000000L,
          level_names[level], msg);
}

static double parse_double(const char *flag, const char *s) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !isfinite(v))
    usage_error("%s wants a number, not '%s'", flag, s);
  return v;
}

static int parse_int(const char *flag, const char *s, int lo, int hi) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi)
    usage_error("%s wants a whole number in [%d, %d], not '%s'", flag, lo, hi, s);
  return (int)v;
}

/* The host part of "host:port" / "[v6]:port" into host (NUL-terminated). */
static void split_host(const char *addr, char *host, size_t n) {
  const char *colon = strrchr(addr, ':');
  size_t len = colon ? (size_t)(colon - addr) : strlen(addr);
  if (len >= n) len = n - 1;
  memcpy(host, addr, len);
  host[len] = 0;
}

static bool is_wildcard(const char *host) {
  return !*host || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "[::]") == 0 ||
         strcmp(host, "::") == 0;
}

typedef struct flags {
  const char *listen, *scheduler, *advertise, *name, *speed_file;
  int threads, max_message_mb, log_level, share_cores, resident_mb;
  double speed, link_mbps, link_rtt_ms;
  bool exit_on_refusal, whole_strips;
} flags;

static flags parse_flags(int argc, char **argv) {
  flags f = {.listen = "127.0.0.1:0", .threads = 1, .max_message_mb = 64,
             .log_level = AGENT_LOG_INFO, .speed = 1.0, .resident_mb = DEFAULT_RESIDENT_MB};
  enum { F_LISTEN = 1, F_SCHED, F_ADV, F_NAME, F_THREADS, F_SPEED, F_MBPS,
         F_RTT, F_MAXMSG, F_LOG, F_REFUSAL, F_HELP, F_SPEED_FILE, F_SHARE, F_WHOLE,
         F_RESIDENT };
  static const struct option opts[] = {
      {"listen", required_argument, NULL, F_LISTEN},
      {"scheduler", required_argument, NULL, F_SCHED},
      {"advertise", required_argument, NULL, F_ADV},
      {"name", required_argument, NULL, F_NAME},
      {"threads", required_argument, NULL, F_THREADS},
      {"speed", required_argument, NULL, F_SPEED},
      {"speed-file", required_argument, NULL, F_SPEED_FILE},
      {"share-cores", required_argument, NULL, F_SHARE},
      {"whole-strips", no_argument, NULL, F_WHOLE},
      {"link-mbps", required_argument, NULL, F_MBPS},
      {"link-rtt-ms", required_argument, NULL, F_RTT},
      {"max-message-mb", required_argument, NULL, F_MAXMSG},
      {"resident-mb", required_argument, NULL, F_RESIDENT},
      {"log-level", required_argument, NULL, F_LOG},
      {"exit-on-refusal", no_argument, NULL, F_REFUSAL},
      {"help", no_argument, NULL, F_HELP},
      {NULL, 0, NULL, 0},
  };
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
      case F_LISTEN: f.listen = optarg; break;
      case F_SCHED: f.scheduler = optarg; break;
      case F_ADV: f.advertise = optarg; break;
      case F_NAME: f.name = optarg; break;
      case F_THREADS: f.threads = parse_int("--threads", optarg, 1, AGENT_MAX_THREADS); break;
      case F_SPEED: f.speed = parse_double("--speed", optarg); break;
      case F_SPEED_FILE: f.speed_file = optarg; break;
      case F_SHARE: f.share_cores = parse_int("--share-cores", optarg, 0, CPU_GATE_MAX_SLOTS); break;
      case F_WHOLE: f.whole_strips = true; break;
      case F_MBPS: f.link_mbps = parse_double("--link-mbps", optarg); break;
      case F_RTT: f.link_rtt_ms = parse_double("--link-rtt-ms", optarg); break;
      case F_RESIDENT:
        f.resident_mb = parse_int("--resident-mb", optarg, 0, MAX_RESIDENT_MB);
        break;
      case F_MAXMSG:
        f.max_message_mb = parse_int("--max-message-mb", optarg, 1, MAX_MESSAGE_MB_LIMIT);
        break;
      case F_LOG: {
        int l = -1;
        for (int i = 0; i < 4; i++)
          if (strcmp(optarg, level_names[i]) == 0) l = i;
        if (l < 0) usage_error("--log-level wants error, warn, info or debug, not '%s'", optarg);
        f.log_level = l;
        break;
      }
      case F_REFUSAL: f.exit_on_refusal = true; break;
      case F_HELP: fputs(usage_text, stdout); exit(0);
      default:
        usage_error("unknown flag or missing value: %s", argv[optind - 1]);
    }
  }
  if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
  if (!(f.speed > 0 && f.speed <= 1e6)) usage_error("--speed must be a positive factor");
  err e = {0};
  if (link_check(f.link_mbps, f.link_rtt_ms, &e) != ERR_OK) usage_error("%s", e.msg);
  if (f.scheduler && !*f.scheduler) usage_error("--scheduler wants an address");
  if (f.name && (!*f.name || strlen(f.name) >= AGENT_NAME_BYTES))
    usage_error("--name wants 1 to %d characters", AGENT_NAME_BYTES - 1);
  return f;
}

/* --speed-file: the speed it names, when it names one other than now.
 * `bad` remembers the last content refused, so it is logged once. */
static void poll_speed_file(agent *a, const char *path, char *bad, size_t bad_len,
                            int *log_level) {
  FILE *fp = fopen(path, "r");
  if (!fp) return;
  char text[64] = "";
  size_t n = fread(text, 1, sizeof text - 1, fp);
  fclose(fp);
  text[n] = 0;
  char *p = text;
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
  if (!*p) return;
  char *end = NULL;
  errno = 0;
  double v = strtod(p, &end);
  while (end && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
  err e = {0};
  if (errno || !end || *end || agent_set_speed(a, v, &e) != ERR_OK) {
    if (strcmp(bad, text) != 0) {
      char line[256];
      snprintf(line, sizeof line, "--speed-file %.100s: '%.40s' is not a positive speed; kept %g",
               path, p, agent_speed(a));
      log_line(log_level, AGENT_LOG_WARN, line);
      snprintf(bad, bad_len, "%s", text);
    }
  }
}

int main(int argc, char **argv) {
  flags f = parse_flags(argc, argv);
  int log_level = f.log_level;
  err re = {0};
  /* Before any thread exists: glibc's arena settings hold from here on. */
  if (resident_keep((size_t)f.resident_mb << 20, &re) != ERR_OK) {
    fprintf(stderr, "edgedi-agent: --resident-mb %d: %s\n", f.resident_mb, re.msg);
    return 1;
  }

  /* Before any thread exists (gRPC starts its own): every thread inherits
   * the mask, and only main takes SIGINT/SIGTERM, in sigtimedwait. */
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);

  err e = {0};
  rpc_options ro = {.max_message_bytes = f.max_message_mb << 20};
  rpc_server *srv = NULL;
  int port = 0;
  if (rpc_server_create(f.listen, &ro, &srv, &port, &e) != ERR_OK) {
    fprintf(stderr, "edgedi-agent: cannot listen on %s: %s\n", f.listen, e.msg);
    return 1;
  }
  char host[256], hostname[200] = "localhost", name[AGENT_NAME_BYTES], address[300];
  split_host(f.listen, host, sizeof host);
  gethostname(hostname, sizeof hostname - 1);
  hostname[sizeof hostname - 1] = 0;
  if (f.name) snprintf(name, sizeof name, "%s", f.name);
  else snprintf(name, sizeof name, "%.100s:%d", hostname, port);
  if (f.advertise) snprintf(address, sizeof address, "%s", f.advertise);
  else snprintf(address, sizeof address, "%s:%d", is_wildcard(host) ? hostname : host, port);

  cpu_gate *gate = NULL;
  if (f.share_cores > 0 &&
      cpu_gate_open(cpu_gate_default_dir(), f.share_cores, &gate, &e) != ERR_OK) {
    fprintf(stderr, "edgedi-agent: --share-cores: %s\n", e.msg);
    rpc_server_destroy(srv, 0);
    return 1;
  }
  agent_options ao = agent_default_options();
  ao.gate = gate;
  ao.whole_strips = f.whole_strips;
  ao.name = name;
  ao.threads = f.threads;
  ao.speed = f.speed;
  ao.link_mbps = f.link_mbps;
  ao.link_rtt_ms = f.link_rtt_ms;
  ao.log = log_line;
  ao.log_ctx = &log_level;
  agent *a = NULL;
  if (agent_create(&ao, &a, &e) != ERR_OK || agent_serve(a, srv, &e) != ERR_OK ||
      rpc_server_start(srv, &e) != ERR_OK) {
    fprintf(stderr, "edgedi-agent: cannot start: %s\n", e.msg);
    rpc_server_destroy(srv, 0);
    agent_destroy(a);
    cpu_gate_close(gate);
    return 1;
  }
  printf("edgedi-agent listening on %s:%d\n", host, port);
  fflush(stdout);
  char line[512];
  snprintf(line, sizeof line,
           "agent %s: %d thread(s), speed %g, link %g Mbit/s %g ms round trip%s",
           name, f.threads, f.speed, f.link_mbps, f.link_rtt_ms,
           f.link_mbps > 0 || f.link_rtt_ms > 0 ? "" : " (not emulated)");
  log_line(&log_level, AGENT_LOG_INFO, line);
  if (f.speed < 1 && f.threads > 1)
    log_line(&log_level, AGENT_LOG_WARN,
             "--speed counts the calling thread's CPU time only: with more "
             "than one thread the emulated device is faster than asked");

  if (f.scheduler) {
    agent_register_options reg = {.scheduler = f.scheduler,
                                  .address = address,
                                  .exit_on_refusal = f.exit_on_refusal,
                                  .rpc = ro};
    if (agent_register_start(a, &reg, &e) != ERR_OK) {
      fprintf(stderr, "edgedi-agent: cannot register: %s\n", e.msg);
      rpc_server_destroy(srv, 0);
      agent_destroy(a);
      cpu_gate_close(gate);
      return 1;
    }
  }

  int status = 0;
  struct timespec poll = {0, SIGNAL_POLL_MS * 1000000L};
  char bad_speed[64] = "";
  for (;;) {
    if (f.speed_file) poll_speed_file(a, f.speed_file, bad_speed, sizeof bad_speed, &log_level);
    int sig = sigtimedwait(&sigs, NULL, &poll);
    if (sig == SIGINT || sig == SIGTERM) {
      snprintf(line, sizeof line, "%s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
      log_line(&log_level, AGENT_LOG_INFO, line);
      break;
    }
    agent_status st;
    agent_get_status(a, &st);
    if (st.gave_up) {
      fprintf(stderr, "edgedi-agent: the scheduler at %s refused this agent: %s\n",
              f.scheduler, st.refusal);
      status = EXIT_REFUSED;
      break;
    }
  }
  agent_register_stop(a);
  agent_shutdown(a);
  rpc_server_destroy(srv, SHUTDOWN_GRACE_MS);
  agent_destroy(a);
  cpu_gate_close(gate);
  log_line(&log_level, AGENT_LOG_INFO, "stopped");
  return status;
}
