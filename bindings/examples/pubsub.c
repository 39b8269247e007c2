/*
 * Publish-subscribe from C: a publisher publishes COUNT temperature readings,
 * alternately under "home.kitchen.temp" and "home.garage.temp", each written
 * in place in a loaned chunk; subscribers receive what matches their pattern.
 *
 *   pubsub [NAMESPACE]                        a subscriber ("home.#") here, the
 *                                             publisher in a forked child
 *   pubsub publisher NAMESPACE COUNT          the publisher alone, on an existing
 *                                             exchange "sensors"
 *
 * Each payload is a struct reading: a sequence number and a temperature.
 */
#include "shmex.h"

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

struct reading {
    uint32_t seq;
    float celsius;
};

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static int publish(const char *ns, int count) {
    shmex_node *node;
    shmex_exchange *ex;
    shmex_publisher *publisher;
    CHECK(shmex_node_create("thermometer", ns, NULL, &node));
    int rc;
    for (int tries = 0; (rc = shmex_exchange_open(node, "sensors", &ex)) == SHMEX_E_NOT_FOUND && tries < 1000; tries++)
        sleep_ms(10);
    CHECK(rc);
    CHECK(shmex_publisher_create(ex, &publisher));

    for (int i = 0; i < count; i++) {
        const char *key = i % 2 == 0 ? "home.kitchen.temp" : "home.garage.temp";
        shmex_published report;
        do {
            shmex_loan *loan;
            struct reading *r;
            CHECK(shmex_publisher_loan(publisher, sizeof *r, &loan, (void **)&r));
            r->seq = (uint32_t)i;
            r->celsius = 20.0f + (float)i / 2;
            CHECK(shmex_publisher_send_loan(publisher, key, loan, &report));
            /* The first reading waits for a subscriber: no match is not an error. */
            if (i == 0 && report.delivered == 0)
                sleep_ms(10);
        } while (i == 0 && report.delivered == 0);
        if (report.missed > 0)
            fprintf(stderr, "reading %d: %u subscribers missed it (inbox full)\n", i, report.missed);
    }
    CHECK(shmex_publisher_free(publisher));
    CHECK(shmex_exchange_free(ex));
    CHECK(shmex_node_free(node));
    return 0;
}

static int subscribe(const char *ns, int count) {
    shmex_node *node;
    shmex_exchange *ex;
    shmex_subscriber *all;
    CHECK(shmex_node_create("display", ns, NULL, &node));
    CHECK(shmex_exchange_create(node, "sensors", SHMEX_PATTERN_PUBLISH_SUBSCRIBE, NULL, &ex));
    CHECK(shmex_subscriber_create(ex, "home.#", 7, &all));

    for (int i = 0; i < count; i++) {
        shmex_sample *sample;
        shmex_sample_info info;
        const char *key;
        CHECK(shmex_subscriber_receive(all, 10000, &sample, &info));
        CHECK(shmex_sample_key(sample, &key));
        const struct reading *r = info.data; /* read in place, 16-byte aligned */
        if (info.len != sizeof *r || r->seq != (uint32_t)i || info.tag != 7) {
            fprintf(stderr, "unexpected reading %d\n", i);
            return 1;
        }
        printf("%s: #%u %.1f C\n", key, r->seq, r->celsius);
        CHECK(shmex_sample_release(sample));
    }
    uint64_t gaps;
    CHECK(shmex_subscriber_gaps(all, &gaps));
    CHECK(shmex_subscriber_free(all));
    CHECK(shmex_exchange_free(ex));
    CHECK(shmex_node_free(node));
    return gaps != 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "publisher") == 0)
        return publish(argv[2], atoi(argv[3]));
    if (argc > 2) {
        fprintf(stderr, "usage: %s [NAMESPACE] | publisher NS COUNT\n", argv[0]);
        return 2;
    }
    char ns[64];
    snprintf(ns, sizeof ns, "%s", argc == 2 ? argv[1] : "");
    if (!ns[0])
        snprintf(ns, sizeof ns, "example-pubsub-%d", (int)getpid());

    pid_t child = fork(); /* before any shmex object */
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0)
        exit(publish(ns, 10));
    int rc = subscribe(ns, 10);
    int status;
    waitpid(child, &status, 0);
    return rc != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0;
}
