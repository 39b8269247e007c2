/*
 * Round-trip latency between two C processes through shmex: 8-byte payloads,
 * both sides spin-polling with try_receive, each process pinned to its own
 * core when there are two. Prints the median and tail of ROUNDS round trips
 * (after a warm-up of ROUNDS / 10), one line:
 *
 *   pingpong rpc 8B rounds=100000 median_ns=812 p90_ns=... p99_ns=... p999_ns=...
 *
 *   pingpong [rpc|pubsub] [ROUNDS] [NAMESPACE] [CPUS]
 *
 * rpc: a client requests, a server responds. pubsub: two publish-subscribe
 * exchanges, "ping" and "pong", one publisher and one subscriber on each.
 * CPUS: "A,B" pins the timing side to core A and the echoing side to core B
 * (exits with an error if the kernel refuses), "-" pins nothing; without
 * it, cores 0 and 1 when there are two (best effort).
 */
#include "shmex.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHECK(call)                                                            \
    do {                                                                       \
        int rc_ = (call);                                                      \
        if (rc_ != SHMEX_OK) {                                                 \
            fprintf(stderr, "%s:%d: %s: %s: %s\n", __FILE__, __LINE__, #call,  \
                    shmex_error_string(rc_), shmex_last_error_message());      \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Core of the timing side (0) and of the echoing side (1); how to pin. */
static int cpu_of[2] = {0, 1};
static enum { PIN_BEST_EFFORT, PIN_STRICT, PIN_NONE } pin_mode = PIN_BEST_EFFORT;

static void pin(int side) {
    if (pin_mode == PIN_NONE || (pin_mode == PIN_BEST_EFFORT && sysconf(_SC_NPROCESSORS_ONLN) < 2))
        return;
    int cpu = cpu_of[side];
    cpu_set_t set, got;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    int ok = sched_setaffinity(0, sizeof set, &set) == 0 && sched_getaffinity(0, sizeof got, &got) == 0 &&
             CPU_EQUAL(&set, &got);
    if (!ok && pin_mode == PIN_STRICT) {
        fprintf(stderr, "pingpong: cannot pin to core %d\n", cpu);
        exit(1);
    }
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static int compare(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void report(const char *mode, uint64_t *rtt, long rounds) {
    qsort(rtt, (size_t)rounds, sizeof *rtt, compare);
    printf("pingpong %s 8B rounds=%ld median_ns=%llu p90_ns=%llu p99_ns=%llu p999_ns=%llu\n", mode, rounds,
           (unsigned long long)rtt[rounds / 2], (unsigned long long)rtt[rounds * 9 / 10],
           (unsigned long long)rtt[rounds * 99 / 100], (unsigned long long)rtt[rounds * 999 / 1000]);
}

/* ---- request-response ---------------------------------------------------- */

static int rpc_server(const char *ns, long total) {
    pin(1);
    shmex_node *node;
    shmex_exchange *ex;
    shmex_server *server;
    CHECK(shmex_node_create("pong", ns, NULL, &node));
    CHECK(shmex_exchange_open_or_create(node, "pingpong", SHMEX_PATTERN_REQUEST_RESPONSE, NULL, &ex));
    CHECK(shmex_server_create(ex, &server));
    for (long i = 0; i < total; i++) {
        shmex_request *request = NULL;
        shmex_request_info info;
        while (request == NULL)
            CHECK(shmex_server_try_receive(server, &request, &info));
        CHECK(shmex_request_respond(request, info.data, info.len)); /* echo */
    }
    CHECK(shmex_server_free(server));
    CHECK(shmex_exchange_free(ex));
    CHECK(shmex_node_free(node));
    return 0;
}

static int rpc_client(const char *ns, long warmup, long rounds) {
    pin(0);
    shmex_node *node;
    shmex_exchange *ex;
    shmex_client *client;
    CHECK(shmex_node_create("ping", ns, NULL, &node));
    CHECK(shmex_exchange_open_or_create(node, "pingpong", SHMEX_PATTERN_REQUEST_RESPONSE, NULL, &ex));
    CHECK(shmex_client_create(ex, &client));
    uint64_t *rtt = malloc((size_t)rounds * sizeof *rtt);
    for (long i = 0; i < warmup + rounds; i++) {
        uint64_t seq = (uint64_t)i, start = now_ns();
        int rc;
        while ((rc = shmex_client_send(client, seq, &seq, sizeof seq)) == SHMEX_E_NO_SERVER)
            sleep_ms(1);
        CHECK(rc);
        shmex_sample *answer = NULL;
        shmex_sample_info info;
        while (answer == NULL)
            CHECK(shmex_client_try_receive(client, &answer, &info, NULL));
        if (info.len != sizeof seq || memcmp(info.data, &seq, sizeof seq) != 0) {
            fprintf(stderr, "wrong echo at %ld\n", i);
            return 1;
        }
        /* The release is part of the round trip, as in the Rust benchmark. */
        CHECK(shmex_sample_release(answer));
        uint64_t end = now_ns();
        if (i >= warmup)
            rtt[i - warmup] = end - start;
    }
    report("rpc", rtt, rounds);
    free(rtt);
    CHECK(shmex_client_free(client));
    CHECK(shmex_exchange_free(ex));
    CHECK(shmex_node_free(node));
    return 0;
}

/* ---- publish-subscribe --------------------------------------------------- */

struct side {
    shmex_node *node;
    shmex_exchange *out_ex, *in_ex;
    shmex_publisher *out;
    shmex_subscriber *in;
};

static void open_side(struct side *s, const char *ns, const char *name, const char *out, const char *in) {
    CHECK(shmex_node_create(name, ns, NULL, &s->node));
    CHECK(shmex_exchange_open_or_create(s->node, out, SHMEX_PATTERN_PUBLISH_SUBSCRIBE, NULL, &s->out_ex));
    CHECK(shmex_exchange_open_or_create(s->node, in, SHMEX_PATTERN_PUBLISH_SUBSCRIBE, NULL, &s->in_ex));
    CHECK(shmex_publisher_create(s->out_ex, &s->out));
    CHECK(shmex_subscriber_create(s->in_ex, "#", 0, &s->in));
}

static void close_side(struct side *s) {
    CHECK(shmex_publisher_free(s->out));
    CHECK(shmex_subscriber_free(s->in));
    CHECK(shmex_exchange_free(s->out_ex));
    CHECK(shmex_exchange_free(s->in_ex));
    CHECK(shmex_node_free(s->node));
}

/* Receives one 8-byte message by spinning; returns the sample (the caller
 * releases it). */
static shmex_sample *spin_receive(shmex_subscriber *in, uint64_t *value) {
    shmex_sample *sample = NULL;
    shmex_sample_info info;
    while (sample == NULL)
        CHECK(shmex_subscriber_try_receive(in, &sample, &info));
    memcpy(value, info.data, sizeof *value);
    return sample;
}

static int pubsub_echo(const char *ns, long total) {
    pin(1);
    struct side s;
    open_side(&s, ns, "pong", "pong", "ping");
    for (long i = 0; i < total; i++) {
        uint64_t v;
        shmex_sample *ping = spin_receive(s.in, &v);
        /* Released before answering, as the Rust benchmark's echo does. */
        CHECK(shmex_sample_release(ping));
        shmex_published report = {0, 0};
        while (report.delivered == 0) /* waits for the other side's subscription */
            CHECK(shmex_publisher_send(s.out, "x", &v, sizeof v, &report));
    }
    close_side(&s);
    return 0;
}

static int pubsub_driver(const char *ns, long warmup, long rounds) {
    pin(0);
    struct side s;
    open_side(&s, ns, "ping", "ping", "pong");
    uint64_t *rtt = malloc((size_t)rounds * sizeof *rtt);
    for (long i = 0; i < warmup + rounds; i++) {
        uint64_t seq = (uint64_t)i, start = now_ns();
        shmex_published report = {0, 0};
        while (report.delivered == 0)
            CHECK(shmex_publisher_send(s.out, "x", &seq, sizeof seq, &report));
        uint64_t v;
        shmex_sample *pong = spin_receive(s.in, &v);
        CHECK(shmex_sample_release(pong));
        uint64_t end = now_ns();
        if (v != seq) {
            fprintf(stderr, "wrong echo at %ld\n", i);
            return 1;
        }
        if (i >= warmup)
            rtt[i - warmup] = end - start;
    }
    report("pubsub", rtt, rounds);
    free(rtt);
    close_side(&s);
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc >= 2 ? argv[1] : "rpc";
    long rounds = argc >= 3 ? atol(argv[2]) : 100000;
    char ns[64];
    snprintf(ns, sizeof ns, "%s", argc >= 4 ? argv[3] : "");
    if (!ns[0])
        snprintf(ns, sizeof ns, "pingpong-%d", (int)getpid());
    int rpc = strcmp(mode, "rpc") == 0;
    int cpus_ok = 1;
    if (argc >= 5 && strcmp(argv[4], "-") == 0)
        pin_mode = PIN_NONE;
    else if (argc >= 5) {
        pin_mode = PIN_STRICT;
        cpus_ok = sscanf(argv[4], "%d,%d", &cpu_of[0], &cpu_of[1]) == 2 && cpu_of[0] >= 0 && cpu_of[1] >= 0 &&
                  cpu_of[0] < CPU_SETSIZE && cpu_of[1] < CPU_SETSIZE;
    }
    if ((!rpc && strcmp(mode, "pubsub") != 0) || rounds < 10 || !cpus_ok) {
        fprintf(stderr, "usage: %s [rpc|pubsub] [ROUNDS >= 10] [NAMESPACE] [CPU,CPU|-]\n", argv[0]);
        return 2;
    }
    long warmup = rounds / 10;
    if (pin_mode == PIN_STRICT) { /* both cores usable? asked before there is a child to strand */
        pin(1);
        pin(0);
    }

    pid_t child = fork(); /* before any shmex object */
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0)
        exit(rpc ? rpc_server(ns, warmup + rounds) : pubsub_echo(ns, warmup + rounds));
    int rc = rpc ? rpc_client(ns, warmup, rounds) : pubsub_driver(ns, warmup, rounds);
    int status;
    waitpid(child, &status, 0);
    return rc != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0;
}
