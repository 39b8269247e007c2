/*
 * Fan-in (inverted publish-subscribe) from C: two producers, forked children,
 * send log lines to one consumer. Producers never wait for each other; the
 * consumer sees each producer's lines in that producer's order.
 *
 *   fanin [NAMESPACE]
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

#define PRODUCERS 2
#define LINES 20

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static int produce(const char *ns, int id) {
    char name[32];
    snprintf(name, sizeof name, "producer-%d", id);
    shmex_node *node;
    shmex_exchange *ex;
    shmex_producer *producer;
    CHECK(shmex_node_create(name, ns, NULL, &node));
    int rc;
    for (int tries = 0; (rc = shmex_exchange_open(node, "log", &ex)) == SHMEX_E_NOT_FOUND && tries < 1000; tries++)
        sleep_ms(10);
    CHECK(rc);
    CHECK(shmex_producer_create(ex, &producer));
    for (int i = 0; i < LINES; i++) {
        char line[64];
        int len = snprintf(line, sizeof line, "%d %s line %d", i, name, i);
        /* QUEUE_FULL or NO_CONSUMER are errors the sender handles: retry. */
        while ((rc = shmex_producer_send(producer, (uint64_t)id, line, (size_t)len)) == SHMEX_E_QUEUE_FULL || rc == SHMEX_E_NO_CONSUMER)
            sleep_ms(1);
        CHECK(rc);
    }
    CHECK(shmex_producer_free(producer));
    CHECK(shmex_exchange_free(ex));
    CHECK(shmex_node_free(node));
    return 0;
}

static int consume(const char *ns) {
    shmex_node *node;
    shmex_exchange *ex;
    shmex_consumer *consumer;
    CHECK(shmex_node_create("logger", ns, NULL, &node));
    CHECK(shmex_exchange_create(node, "log", SHMEX_PATTERN_FAN_IN, NULL, &ex));
    CHECK(shmex_consumer_create(ex, &consumer));
    int next[PRODUCERS] = {0};
    for (int n = 0; n < PRODUCERS * LINES; n++) {
        shmex_sample *sample;
        shmex_sample_info info;
        CHECK(shmex_consumer_receive(consumer, 10000, &sample, &info));
        int id = (int)info.tag;
        if (id < 0 || id >= PRODUCERS || atoi((const char *)info.data) != next[id]) {
            fprintf(stderr, "line out of order from producer %d\n", id);
            return 1;
        }
        next[id]++;
        printf("[sender %u.%u] %.*s\n", (unsigned)(info.sender & 0xffffffffu),
               (unsigned)(info.sender >> 32), (int)info.len, (const char *)info.data);
        CHECK(shmex_sample_release(sample));
    }
    CHECK(shmex_consumer_free(consumer));
    CHECK(shmex_exchange_free(ex));
    CHECK(shmex_node_free(node));
    return 0;
}

int main(int argc, char **argv) {
    char ns[64];
    snprintf(ns, sizeof ns, "%s", argc >= 2 ? argv[1] : "");
    if (!ns[0])
        snprintf(ns, sizeof ns, "example-fanin-%d", (int)getpid());

    pid_t children[PRODUCERS];
    for (int id = 0; id < PRODUCERS; id++) { /* fork before any shmex object */
        children[id] = fork();
        if (children[id] < 0) {
            perror("fork");
            return 1;
        }
        if (children[id] == 0)
            exit(produce(ns, id));
    }
    int rc = consume(ns);
    for (int id = 0; id < PRODUCERS; id++) {
        int status;
        waitpid(children[id], &status, 0);
        rc |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    }
    return rc;
}
