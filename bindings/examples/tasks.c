/*
 * Task distribution from C: a submitter queues 20 tasks at priorities 0..3,
 * two workers (forked children) take them within a prefetch limit of 1 and
 * ack each. Task 7 is nacked once and comes back redelivered; task 13 is
 * nacked without requeue and ends on the dead-letter queue. A "stop" task per
 * worker, at the lowest priority, ends the workers.
 *
 *   tasks [NAMESPACE]
 *   tasks worker NAMESPACE HANG_TAG      one worker alone on an existing task
 *                                        exchange "jobs": prints "ready", acks
 *                                        each task ("acked TAG"), and hangs
 *                                        forever (no ack) on task HANG_TAG
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

#define TASKS 20
#define WORKERS 2
#define STOP 1000000 /* tags from here on stop a worker */

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static void open_jobs(shmex_node *node, shmex_exchange **ex) {
    int rc;
    for (int tries = 0; (rc = shmex_exchange_open(node, "jobs", ex)) == SHMEX_E_NOT_FOUND && tries < 1000; tries++)
        sleep_ms(10);
    CHECK(rc);
}

static int work(const char *ns, int id) {
    char name[32];
    snprintf(name, sizeof name, "worker-%d", id);
    shmex_node *node;
    shmex_exchange *ex;
    shmex_worker *worker;
    CHECK(shmex_node_create(name, ns, NULL, &node));
    open_jobs(node, &ex);
    CHECK(shmex_worker_create(ex, 1, &worker));
    for (;;) {
        shmex_delivery *task;
        shmex_delivery_info info;
        CHECK(shmex_worker_receive(worker, 10000, &task, &info));
        printf("%s: task %llu (priority %u, delivery %u): %.*s\n", name, (unsigned long long)info.tag,
               info.priority, info.deliveries, (int)info.len, (const char *)info.data);
        if (info.tag >= STOP) {
            CHECK(shmex_delivery_ack(task));
            break;
        }
        if (info.tag == 7 && !info.redelivered) {
            CHECK(shmex_delivery_nack(task, 1)); /* back to the queue */
        } else if (info.tag == 13) {
            CHECK(shmex_delivery_nack(task, 0)); /* to the dead-letter queue */
        } else {
            sleep_ms(1); /* the work */
            CHECK(shmex_delivery_ack(task));
        }
    }
    CHECK(shmex_worker_free(worker));
    CHECK(shmex_exchange_free(ex));
    CHECK(shmex_node_free(node));
    return 0;
}

/* One worker for the cross-language tests. */
static int work_until_hang(const char *ns, uint64_t hang) {
    shmex_node *node;
    shmex_exchange *ex;
    shmex_worker *worker;
    CHECK(shmex_node_create("c-worker", ns, NULL, &node));
    open_jobs(node, &ex);
    CHECK(shmex_worker_create(ex, 1, &worker));
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        shmex_delivery *task;
        shmex_delivery_info info;
        CHECK(shmex_worker_receive(worker, SHMEX_FOREVER, &task, &info));
        if (info.tag == hang) {
            printf("hanging %llu\n", (unsigned long long)info.tag);
            fflush(stdout);
            for (;;)
                pause(); /* holds the task until killed */
        }
        CHECK(shmex_delivery_ack(task));
        printf("acked %llu\n", (unsigned long long)info.tag);
        fflush(stdout);
        if (info.tag >= STOP)
            break;
    }
    CHECK(shmex_worker_free(worker));
    CHECK(shmex_exchange_free(ex));
    CHECK(shmex_node_free(node));
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "worker") == 0)
        return work_until_hang(argv[2], strtoull(argv[3], NULL, 10));
    if (argc > 2) {
        fprintf(stderr, "usage: %s [NAMESPACE] | worker NS HANG_TAG\n", argv[0]);
        return 2;
    }
    char ns[64];
    snprintf(ns, sizeof ns, "%s", argc == 2 ? argv[1] : "");
    if (!ns[0])
        snprintf(ns, sizeof ns, "example-tasks-%d", (int)getpid());

    pid_t children[WORKERS];
    for (int id = 0; id < WORKERS; id++) { /* fork before any shmex object */
        children[id] = fork();
        if (children[id] < 0) {
            perror("fork");
            return 1;
        }
        if (children[id] == 0)
            exit(work(ns, id));
    }

    shmex_node *node;
    shmex_exchange *ex;
    shmex_submitter *submitter;
    shmex_limits limits;
    CHECK(shmex_limits_init(&limits));
    limits.queue_depth = 64;
    limits.ack_timeout_ms = 5000;
    limits.max_deliveries = 3;
    CHECK(shmex_node_create("boss", ns, NULL, &node));
    CHECK(shmex_exchange_create(node, "jobs", SHMEX_PATTERN_TASKS, &limits, &ex));
    CHECK(shmex_submitter_create(ex, &submitter));
    for (uint64_t tag = 0; tag < TASKS; tag++) {
        char job[32];
        int len = snprintf(job, sizeof job, "job %llu", (unsigned long long)tag);
        /* Priority 1..3 (higher first); waits up to 1 s while the queue is full. */
        CHECK(shmex_submitter_send(submitter, (uint8_t)(1 + tag % SHMEX_MAX_PRIORITY), tag, job, (size_t)len, 1000));
    }
    for (uint64_t w = 0; w < WORKERS; w++) /* lowest priority: after every job */
        CHECK(shmex_submitter_send(submitter, 0, STOP + w, "stop", 4, 1000));

    int rc = 0;
    for (int id = 0; id < WORKERS; id++) {
        int status;
        waitpid(children[id], &status, 0);
        rc |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    }

    shmex_task_stats stats;
    CHECK(shmex_exchange_task_stats(ex, &stats));
    printf("acked %llu, redelivered %llu, dead letters %u\n", (unsigned long long)stats.acked,
           (unsigned long long)stats.redelivered, stats.dead_letters);
    rc |= stats.acked != TASKS - 1 + WORKERS || stats.dead_letters != 1 || stats.queued != 0;

    /* The dead letter: task 13, nacked without requeue. */
    shmex_worker *janitor;
    shmex_dead_letter *dead;
    shmex_dead_letter_info info;
    CHECK(shmex_worker_create(ex, 1, &janitor));
    CHECK(shmex_worker_try_receive_dead_letter(janitor, &dead, &info));
    if (dead == NULL || info.tag != 13) {
        fprintf(stderr, "expected task 13 on the dead-letter queue\n");
        rc = 1;
    } else {
        printf("dead letter: task %llu after %u deliveries\n", (unsigned long long)info.tag, info.deliveries);
        CHECK(shmex_dead_letter_release(dead));
    }
    CHECK(shmex_worker_free(janitor));
    CHECK(shmex_submitter_free(submitter));
    CHECK(shmex_exchange_free(ex));
    CHECK(shmex_node_free(node));
    return rc;
}
