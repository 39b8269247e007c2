/*
 * Round-trip latency between two C processes through shmex: 8-byte payloads,
 * both sides spin-polling with try_receive, each process pinned to its own
 * core when there are two. Prints the median and tail of ROUNDS round trips
 * (after a warm-up of ROUNDS / 10), one line:
 *
 *   pingpong rpc 8B rounds=100000 median_ns=812 p90_ns=... p99_ns=... p999_ns=...
 *
 *   pingpong [rpc|pubsub] [ROUNDS] [NAMESPACE]
 *
 * rpc: a client requests, a server responds. pubsub: two publish-subscribe
 * exchanges, "ping" and "pong", one publisher and one subscriber on each.
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

static void pin(int cpu) {
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set); /* best effort */
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
        while ((rc = shmex_client_request(client, seq, &seq, sizeof seq)) == SHMEX_E_NO_SERVER)
            sleep_ms(1);
        CHECK(rc);
        shmex_sample *answer = NULL;
        shmex_sample_info info;
        while (answer == NULL)
            CHECK(shmex_client_try_receive(client, &answer, &info, NULL));
        uint64_t end = now_ns();
        if (info.len != sizeof seq || memcmp(info.data, &seq, sizeof seq) != 0) {
            fprintf(stderr, "wrong echo at %ld\n", i);
            return 1;
        }
        CHECK(shmex_sample_release(answer));
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

/* Receives one 8-byte message by spinning; returns the sample (release it
 * after answering: the release is then off the round trip's path). */
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
        shmex_published report = {0, 0};
        while (report.delivered == 0) /* waits for the other side's subscription */
            CHECK(shmex_publisher_publish(s.out, "x", &v, sizeof v, &report));
        CHECK(shmex_sample_release(ping));
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
            CHECK(shmex_publisher_publish(s.out, "x", &seq, sizeof seq, &report));
        uint64_t v;
        shmex_sample *pong = spin_receive(s.in, &v);
        uint64_t end = now_ns();
        CHECK(shmex_sample_release(pong));
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
    if ((!rpc && strcmp(mode, "pubsub") != 0) || rounds < 10) {
        fprintf(stderr, "usage: %s [rpc|pubsub] [ROUNDS >= 10] [NAMESPACE]\n", argv[0]);
        return 2;
    }
    long warmup = rounds / 10;

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
