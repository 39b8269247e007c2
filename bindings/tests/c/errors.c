/*
 * Error handling of the C API, checked from C in one process: NULL arguments,
 * stale, forged and mistyped handles, busy ports, wrong lengths, and the
 * error codes of every pattern. Prints "ok: N checks" and exits 0, or names
 * the first failed check and exits 1.
 *
 *   errors NAMESPACE
 */
#include "shmex.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int checks;

#define EXPECT(call, code)                                                     \
    do {                                                                       \
        int rc_ = (call);                                                      \
        checks++;                                                              \
        if (rc_ != (code)) {                                                   \
            fprintf(stderr, "%s:%d: %s returned %d (%s), expected %s: %s\n",   \
                    __FILE__, __LINE__, #call, rc_, shmex_error_string(rc_),   \
                    #code, shmex_last_error_message());                        \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

#define OK(call) EXPECT(call, SHMEX_OK)

#define TRUE(cond)                                                             \
    do {                                                                       \
        checks++;                                                              \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: %s is false\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

static void arguments_and_handles(const char *ns, shmex_node *node) {
    shmex_node *other;
    shmex_exchange *ex;
    shmex_client *client;
    shmex_server *server;

    /* NULL arguments. */
    EXPECT(shmex_node_create(NULL, ns, NULL, &other), SHMEX_E_NULL);
    EXPECT(shmex_node_create("x", ns, NULL, NULL), SHMEX_E_NULL);
    TRUE(strstr(shmex_last_error_message(), "NULL") != NULL);
    EXPECT(shmex_exchange_create(node, NULL, SHMEX_PATTERN_FAN_IN, NULL, &ex), SHMEX_E_NULL);
    EXPECT(shmex_exchange_create(NULL, "x", SHMEX_PATTERN_FAN_IN, NULL, &ex), SHMEX_E_NULL);
    EXPECT(shmex_client_create(NULL, &client), SHMEX_E_NULL);
    EXPECT(shmex_client_free(NULL), SHMEX_E_NULL);
    EXPECT(shmex_limits_init(NULL), SHMEX_E_NULL);

    /* Invalid names, patterns, limits, strings. */
    EXPECT(shmex_node_create("bad/name", ns, NULL, &other), SHMEX_E_INVALID_ARGUMENT);
    TRUE(strstr(shmex_last_error_message(), "bad/name") != NULL);
    EXPECT(shmex_exchange_create(node, "\xff\xfe", SHMEX_PATTERN_FAN_IN, NULL, &ex), SHMEX_E_INVALID_ARGUMENT);
    EXPECT(shmex_exchange_create(node, "x", 99, NULL, &ex), SHMEX_E_INVALID_ARGUMENT);
    shmex_limits limits;
    OK(shmex_limits_init(&limits));
    TRUE(limits.chunk_size == 4096 && limits.queue_depth == 64 && limits.mode == 0600);
    limits.queue_depth = 3; /* not a power of two */
    EXPECT(shmex_exchange_create(node, "x", SHMEX_PATTERN_FAN_IN, &limits, &ex), SHMEX_E_INVALID_ARGUMENT);
    size_t size;
    EXPECT(shmex_limits_segment_size(&limits, SHMEX_PATTERN_FAN_IN, &size), SHMEX_E_INVALID_ARGUMENT);
    OK(shmex_limits_segment_size(NULL, SHMEX_PATTERN_FAN_IN, &size));
    TRUE(size > 256 * 4096);

    /* Exchanges: not found, exists, mismatch, wrong pattern. */
    EXPECT(shmex_exchange_open(node, "nowhere", &ex), SHMEX_E_NOT_FOUND);
    OK(shmex_exchange_create(node, "rpc", SHMEX_PATTERN_REQUEST_RESPONSE, NULL, &ex));
    shmex_exchange *again;
    EXPECT(shmex_exchange_create(node, "rpc", SHMEX_PATTERN_REQUEST_RESPONSE, NULL, &again), SHMEX_E_ALREADY_EXISTS);
    EXPECT(shmex_exchange_open_or_create(node, "rpc", SHMEX_PATTERN_FAN_IN, NULL, &again), SHMEX_E_MISMATCH);
    shmex_subscriber *sub;
    EXPECT(shmex_subscriber_create(ex, "#", 0, &sub), SHMEX_E_WRONG_PATTERN);
    shmex_limits got;
    uint32_t pattern;
    OK(shmex_exchange_info(ex, &got, &pattern));
    TRUE(pattern == SHMEX_PATTERN_REQUEST_RESPONSE && got.chunk_count == 256);
    shmex_task_stats stats;
    EXPECT(shmex_exchange_task_stats(ex, &stats), SHMEX_E_WRONG_PATTERN);

    /* Stale, forged and mistyped handles. */
    OK(shmex_client_create(ex, &client));
    OK(shmex_server_create(ex, &server));
    EXPECT(shmex_server_free((shmex_server *)client), SHMEX_E_STALE_HANDLE);
    EXPECT(shmex_client_send((shmex_client *)(uintptr_t)0x12345678, 1, "x", 1), SHMEX_E_STALE_HANDLE);
    EXPECT(shmex_client_send((shmex_client *)ex, 1, "x", 1), SHMEX_E_STALE_HANDLE);
    OK(shmex_client_free(client));
    EXPECT(shmex_client_free(client), SHMEX_E_STALE_HANDLE);
    EXPECT(shmex_client_send(client, 1, "x", 1), SHMEX_E_STALE_HANDLE);
    OK(shmex_client_create(ex, &client));

    /* Lengths: NULL data with a length, payloads larger than a chunk. */
    EXPECT(shmex_client_send(client, 1, NULL, 5), SHMEX_E_NULL);
    static char big[4097];
    EXPECT(shmex_client_send(client, 1, big, sizeof big), SHMEX_E_PAYLOAD_TOO_LARGE);
    shmex_loan *loan;
    void *data;
    EXPECT(shmex_client_loan(client, 4097, &loan, &data), SHMEX_E_PAYLOAD_TOO_LARGE);
    OK(shmex_client_loan(client, 16, &loan, &data));
    TRUE(data != NULL && ((uintptr_t)data & 15) == 0);
    EXPECT(shmex_loan_set_len(loan, 4097), SHMEX_E_PAYLOAD_TOO_LARGE);
    OK(shmex_loan_set_len(loan, 4));
    size_t len;
    void *again_data;
    OK(shmex_loan_get(loan, &again_data, &len));
    TRUE(again_data == data && len == 4);

    /* A port with a live loan is busy; a loan of another port is refused
     * and consumed (as every loan given to a send). */
    EXPECT(shmex_client_free(client), SHMEX_E_BUSY);
    shmex_loan *server_loan;
    OK(shmex_server_loan(server, 8, &server_loan, NULL));
    EXPECT(shmex_client_send_loan(client, 1, server_loan), SHMEX_E_INVALID_ARGUMENT);
    EXPECT(shmex_loan_release(server_loan), SHMEX_E_STALE_HANDLE);
    memcpy(data, "ping", 4);
    OK(shmex_client_send_loan(client, 5, loan)); /* consumes the loan */
    EXPECT(shmex_loan_release(loan), SHMEX_E_STALE_HANDLE);

    /* The request and its answer; a request whose answer was dropped. */
    shmex_request *request;
    shmex_request_info rinfo;
    OK(shmex_server_receive(server, 1000, &request, &rinfo, NULL));
    TRUE(rinfo.tag == 5 && rinfo.len == 4 && memcmp(rinfo.data, "ping", 4) == 0 && !rinfo.is_answer);
    EXPECT(shmex_server_free(server), SHMEX_E_BUSY);
    OK(shmex_request_respond(request, "pong", 4));
    EXPECT(shmex_request_respond(request, "pong", 4), SHMEX_E_STALE_HANDLE);
    shmex_sample *sample;
    shmex_sample_info info;
    OK(shmex_client_receive(client, 1000, &sample, &info, NULL));
    TRUE(info.tag == 5 && info.kind == SHMEX_SAMPLE_MESSAGE && memcmp(info.data, "pong", 4) == 0);
    const char *key = "not null";
    OK(shmex_sample_key(sample, &key));
    TRUE(key == NULL);
    OK(shmex_sample_release(sample));
    EXPECT(shmex_sample_get_info(sample, &info), SHMEX_E_STALE_HANDLE);

    OK(shmex_client_send(client, 6, "drop me", 7));
    OK(shmex_server_receive(server, 1000, &request, NULL, NULL));
    OK(shmex_request_release(request)); /* unanswered */
    shmex_failure failure = {0, 99};
    EXPECT(shmex_client_receive(client, 1000, &sample, &info, &failure), SHMEX_E_REQUEST_FAILED);
    TRUE(failure.tag == 6 && failure.reason == SHMEX_FAIL_UNANSWERED);

    /* Nothing there: try_receive gives NULL, receive times out. */
    sample = (shmex_sample *)1;
    OK(shmex_client_try_receive(client, &sample, NULL, NULL));
    TRUE(sample == NULL);
    EXPECT(shmex_client_receive(client, 10, &sample, NULL, NULL), SHMEX_E_TIMEOUT);
    EXPECT(shmex_client_try_receive(client, NULL, NULL, NULL), SHMEX_E_NULL);

    /* Queue full: a client has at most queue_depth requests outstanding. */
    int rc = SHMEX_OK, sent = 0;
    while ((rc = shmex_client_send(client, 100 + (uint64_t)sent, "q", 1)) == SHMEX_OK)
        sent++;
    EXPECT(rc, SHMEX_E_QUEUE_FULL);
    TRUE(sent == 64);

    OK(shmex_client_free(client)); /* its outstanding requests go with it */
    OK(shmex_server_free(server));
    OK(shmex_exchange_free(ex));
    EXPECT(shmex_exchange_free(ex), SHMEX_E_STALE_HANDLE);
}

static void streams(shmex_node *node) {
    shmex_exchange *ex;
    shmex_client *client;
    shmex_server *server;
    shmex_request *request;
    shmex_stream *stream;
    shmex_sample *sample;
    shmex_sample_info info;
    shmex_failure failure;
    OK(shmex_exchange_create(node, "files", SHMEX_PATTERN_REQUEST_RESPONSE, NULL, &ex));
    OK(shmex_client_create(ex, &client));
    OK(shmex_server_create(ex, &server));

    /* The window: two parts go, the third waits (times out) until one is
     * released. */
    OK(shmex_client_request_stream(client, 1, "f", 1, 2));
    shmex_request_info rinfo;
    OK(shmex_server_receive(server, 1000, &request, &rinfo, NULL));
    TRUE(rinfo.stream_window == 2);
    OK(shmex_request_respond_stream(request, &stream));
    OK(shmex_stream_send(stream, "a", 1));
    OK(shmex_stream_send(stream, "b", 1));
    int ready;
    uint64_t sent;
    OK(shmex_stream_status(stream, &ready, &sent));
    TRUE(!ready && sent == 2);
    shmex_loan *loan;
    OK(shmex_stream_loan(stream, 1, &loan, NULL));
    EXPECT(shmex_stream_send_loan(stream, loan, 20), SHMEX_E_TIMEOUT);
    OK(shmex_client_receive(client, 1000, &sample, &info, NULL));
    TRUE(info.kind == SHMEX_SAMPLE_STREAM_CHUNK && info.len == 1 && *(const char *)info.data == 'a');
    OK(shmex_sample_release(sample));
    OK(shmex_stream_status(stream, &ready, NULL));
    TRUE(ready);
    OK(shmex_stream_send(stream, "c", 1));
    OK(shmex_stream_end(stream));
    EXPECT(shmex_stream_end(stream), SHMEX_E_STALE_HANDLE);
    const char *expect = "bc";
    for (int i = 0; i < 2; i++) {
        OK(shmex_client_receive(client, 1000, &sample, &info, NULL));
        TRUE(info.kind == SHMEX_SAMPLE_STREAM_CHUNK && *(const char *)info.data == expect[i]);
        OK(shmex_sample_release(sample));
    }
    OK(shmex_client_receive(client, 1000, &sample, &info, NULL));
    TRUE(info.kind == SHMEX_SAMPLE_STREAM_END && info.len == 0 && info.data == NULL);
    OK(shmex_sample_release(sample));

    /* Abort: the client is told. */
    OK(shmex_client_request_stream(client, 2, "f", 1, 4));
    OK(shmex_server_receive(server, 1000, &request, NULL, NULL));
    OK(shmex_request_respond_stream(request, &stream));
    EXPECT(shmex_server_free(server), SHMEX_E_BUSY);
    OK(shmex_stream_abort(stream));
    EXPECT(shmex_client_receive(client, 1000, &sample, &info, &failure), SHMEX_E_REQUEST_FAILED);
    TRUE(failure.tag == 2 && failure.reason == SHMEX_FAIL_ABORTED);

    /* Cancel: the server's next send says so. */
    OK(shmex_client_request_stream(client, 3, "f", 1, 4));
    OK(shmex_server_receive(server, 1000, &request, NULL, NULL));
    OK(shmex_request_respond_stream(request, &stream));
    int cancelled = 0;
    OK(shmex_client_cancel(client, 3, &cancelled));
    TRUE(cancelled == 1);
    OK(shmex_client_cancel(client, 77, &cancelled));
    TRUE(cancelled == 0);
    EXPECT(shmex_stream_send(stream, "x", 1), SHMEX_E_CANCELLED);
    OK(shmex_stream_abort(stream));

    /* A plain request cannot be answered with a stream: dropped, and the
     * client told. */
    OK(shmex_client_send(client, 5, "f", 1));
    OK(shmex_server_receive(server, 1000, &request, &rinfo, NULL));
    TRUE(rinfo.stream_window == 0);
    EXPECT(shmex_request_respond_stream(request, &stream), SHMEX_E_NOT_A_STREAM_REQUEST);
    EXPECT(shmex_request_release(request), SHMEX_E_STALE_HANDLE);
    EXPECT(shmex_client_receive(client, 1000, &sample, &info, &failure), SHMEX_E_REQUEST_FAILED);
    TRUE(failure.tag == 5 && failure.reason == SHMEX_FAIL_UNANSWERED);

    /* Dialogue: a question, answered with a loan; answering a non-question
     * is refused. */
    OK(shmex_client_send(client, 4, "hi", 2));
    OK(shmex_server_receive(server, 1000, &request, NULL, NULL));
    OK(shmex_request_ask(request, "who?", 4));
    shmex_sample *question;
    OK(shmex_client_receive(client, 1000, &question, &info, NULL));
    TRUE(info.kind == SHMEX_SAMPLE_QUESTION && info.tag == 4);
    void *data;
    OK(shmex_client_loan(client, 2, &loan, &data));
    memcpy(data, "me", 2);
    OK(shmex_client_answer_loan(client, question, loan));
    OK(shmex_sample_release(question));
    shmex_request_info answer;
    OK(shmex_server_receive(server, 1000, &request, &answer, NULL));
    TRUE(answer.is_answer && answer.tag == 4 && memcmp(answer.data, "me", 2) == 0);
    shmex_loan *reply;
    OK(shmex_server_loan(server, 2, &reply, &data));
    memcpy(data, "ok", 2);
    OK(shmex_request_respond_loan(request, reply));
    OK(shmex_client_receive(client, 1000, &sample, &info, NULL));
    TRUE(info.kind == SHMEX_SAMPLE_MESSAGE && info.tag == 4);
    EXPECT(shmex_client_answer(client, sample, "no", 2), SHMEX_E_INVALID_ARGUMENT);
    OK(shmex_sample_release(sample));

    size_t doomed = 99;
    OK(shmex_client_check_servers(client, &doomed));
    TRUE(doomed == 0);
    OK(shmex_client_free(client));
    OK(shmex_server_free(server));
    OK(shmex_exchange_free(ex));
}

static void pubsub_and_fanin(shmex_node *node) {
    shmex_exchange *ex;
    shmex_publisher *pub;
    shmex_subscriber *sub;
    shmex_sample *sample;
    shmex_sample_info info;
    shmex_published report;
    OK(shmex_exchange_create(node, "topics", SHMEX_PATTERN_PUBLISH_SUBSCRIBE, NULL, &ex));
    static char long_pattern[300];
    memset(long_pattern, 'a', sizeof long_pattern - 1);
    EXPECT(shmex_subscriber_create(ex, long_pattern, 0, &sub), SHMEX_E_INVALID_ARGUMENT);
    OK(shmex_subscriber_create(ex, "a.*", 3, &sub));
    OK(shmex_publisher_create(ex, &pub));
    EXPECT(shmex_publisher_send(pub, "a.*", "x", 1, &report), SHMEX_E_INVALID_ARGUMENT);
    EXPECT(shmex_publisher_send(pub, NULL, "x", 1, &report), SHMEX_E_NULL);
    OK(shmex_publisher_send(pub, "b.c", "x", 1, &report));
    TRUE(report.delivered == 0 && report.missed == 0);
    OK(shmex_publisher_send(pub, "a.c", "y", 1, &report));
    TRUE(report.delivered == 1);
    OK(shmex_subscriber_receive(sub, 1000, &sample, &info));
    const char *key;
    OK(shmex_sample_key(sample, &key));
    TRUE(strcmp(key, "a.c") == 0 && info.tag == 3);
    EXPECT(shmex_subscriber_free(sub), SHMEX_E_BUSY);
    OK(shmex_sample_release(sample));

    /* Full inbox: the publication is missed, and counted on both sides. */
    for (int i = 0; i < 64; i++)
        OK(shmex_publisher_send(pub, "a.c", "z", 1, NULL));
    OK(shmex_publisher_send(pub, "a.c", "z", 1, &report));
    TRUE(report.delivered == 0 && report.missed == 1);
    uint64_t gaps;
    OK(shmex_subscriber_gaps(sub, &gaps));
    TRUE(gaps == 1);

    /* Pool exhausted: loans hold every chunk. */
    shmex_loan *loans[256];
    int n = 0;
    int rc;
    while (n < 256 && (rc = shmex_publisher_loan(pub, 8, &loans[n], NULL)) == SHMEX_OK)
        n++;
    EXPECT(shmex_publisher_loan(pub, 8, &loans[0], NULL), SHMEX_E_POOL_EXHAUSTED);
    while (n > 0)
        OK(shmex_loan_release(loans[--n]));
    OK(shmex_subscriber_free(sub)); /* unsubscribes; queued samples go back */
    OK(shmex_publisher_free(pub));
    OK(shmex_exchange_free(ex));

    /* Fan-in: no consumer, one consumer only. */
    shmex_producer *producer;
    shmex_consumer *consumer, *second;
    OK(shmex_exchange_create(node, "log", SHMEX_PATTERN_FAN_IN, NULL, &ex));
    OK(shmex_producer_create(ex, &producer));
    EXPECT(shmex_producer_send(producer, 1, "x", 1), SHMEX_E_NO_CONSUMER);
    OK(shmex_consumer_create(ex, &consumer));
    EXPECT(shmex_consumer_create(ex, &second), SHMEX_E_CONSUMER_EXISTS);
    shmex_loan *loan;
    void *data;
    OK(shmex_producer_loan(producer, 3, &loan, &data));
    memcpy(data, "log", 3);
    OK(shmex_producer_send_loan(producer, 9, loan));
    OK(shmex_consumer_receive(consumer, 1000, &sample, &info));
    TRUE(info.tag == 9 && info.len == 3);
    OK(shmex_sample_release(sample));
    OK(shmex_consumer_try_receive(consumer, &sample, NULL));
    TRUE(sample == NULL);
    OK(shmex_producer_free(producer));
    OK(shmex_consumer_free(consumer));
    OK(shmex_exchange_free(ex));
}

static void tasks(shmex_node *node) {
    shmex_exchange *ex;
    shmex_submitter *submitter;
    shmex_worker *worker;
    shmex_delivery *task;
    shmex_delivery_info info;
    shmex_limits limits;
    OK(shmex_limits_init(&limits));
    limits.queue_depth = 4;
    limits.max_deliveries = 2;
    OK(shmex_exchange_create(node, "jobs", SHMEX_PATTERN_TASKS, &limits, &ex));
    OK(shmex_submitter_create(ex, &submitter));
    OK(shmex_worker_create(ex, 1, &worker));
    EXPECT(shmex_submitter_send(submitter, SHMEX_MAX_PRIORITY + 1, 1, "x", 1, 0), SHMEX_E_INVALID_ARGUMENT);
    for (uint64_t t = 0; t < 4; t++)
        OK(shmex_submitter_send(submitter, 1, t, "x", 1, 0));
    EXPECT(shmex_submitter_send(submitter, 1, 5, "x", 1, 0), SHMEX_E_QUEUE_FULL);
    EXPECT(shmex_submitter_send(submitter, 1, 5, "x", 1, 20), SHMEX_E_QUEUE_FULL);

    OK(shmex_worker_receive(worker, 1000, &task, &info));
    TRUE(info.tag == 0 && info.deliveries == 1 && !info.redelivered);
    shmex_delivery *second;
    EXPECT(shmex_worker_receive(worker, 1000, &second, NULL), SHMEX_E_PREFETCH_LIMIT);
    OK(shmex_worker_try_receive(worker, &second, NULL));
    TRUE(second == NULL);
    uint32_t held;
    OK(shmex_worker_held(worker, &held));
    TRUE(held == 1);
    EXPECT(shmex_worker_free(worker), SHMEX_E_BUSY);
    uint64_t id = info.id;
    OK(shmex_delivery_release(task)); /* still held: ack by id */
    OK(shmex_worker_ack(worker, id));
    EXPECT(shmex_worker_ack(worker, id), SHMEX_E_NOT_HELD);

    /* Nack with requeue: redelivered (after the others, queued before it);
     * nack without: a dead letter. */
    OK(shmex_worker_receive(worker, 1000, &task, &info));
    TRUE(info.tag == 1);
    OK(shmex_delivery_nack(task, 1));
    int seen = 0;
    for (int i = 0; i < 3; i++) {
        OK(shmex_worker_receive(worker, 1000, &task, &info));
        seen |= 1 << info.tag;
        if (info.tag == 1) {
            TRUE(info.redelivered && info.deliveries == 2);
            OK(shmex_delivery_nack(task, 0));
        } else {
            TRUE(!info.redelivered);
            OK(shmex_delivery_get_info(task, &info));
            OK(shmex_delivery_ack(task));
            EXPECT(shmex_delivery_ack(task), SHMEX_E_STALE_HANDLE);
        }
    }
    TRUE(seen == (1 << 1 | 1 << 2 | 1 << 3));
    shmex_dead_letter *dead;
    shmex_dead_letter_info dinfo;
    OK(shmex_worker_try_receive_dead_letter(worker, &dead, &dinfo));
    TRUE(dead != NULL && dinfo.tag == 1 && dinfo.deliveries == 2);
    OK(shmex_dead_letter_release(dead));
    OK(shmex_worker_try_receive_dead_letter(worker, &dead, NULL));
    TRUE(dead == NULL);

    EXPECT(shmex_worker_receive(worker, 10, &task, NULL), SHMEX_E_TIMEOUT);
    shmex_task_stats stats;
    OK(shmex_exchange_task_stats(ex, &stats));
    TRUE(stats.acked == 3 && stats.queued == 0 && stats.in_flight == 0 && stats.workers == 1);
    OK(shmex_worker_free(worker));
    OK(shmex_submitter_free(submitter));
    OK(shmex_exchange_free(ex));
}

static void waitsets_and_watches(shmex_node *node) {
    shmex_waitset *set;
    shmex_watch *watch;
    shmex_exchange *ex;
    shmex_publisher *pub;
    shmex_subscriber *sub;
    size_t ready[4], n, w, s;
    int event;
    OK(shmex_waitset_create(&set));
    EXPECT(shmex_waitset_wait(set, 0, ready, 4, &n), SHMEX_E_TIMEOUT); /* empty */
    /* Empty and no timeout: nothing could ever wake it. */
    EXPECT(shmex_waitset_wait(set, SHMEX_FOREVER, ready, 4, &n), SHMEX_E_INVALID_ARGUMENT);
    EXPECT(shmex_waitset_wait(set, 0, NULL, 4, &n), SHMEX_E_NULL);
    OK(shmex_watch_create(node, "news", &watch));
    int up = 1;
    OK(shmex_watch_is_up(watch, &up));
    TRUE(!up);
    OK(shmex_exchange_create(node, "news", SHMEX_PATTERN_PUBLISH_SUBSCRIBE, NULL, &ex));
    OK(shmex_publisher_create(ex, &pub));
    OK(shmex_subscriber_create(ex, "#", 0, &sub));
    EXPECT(shmex_waitset_add(set, pub, &w), SHMEX_E_STALE_HANDLE); /* nothing to receive */
    EXPECT(shmex_waitset_add(set, ex, &w), SHMEX_E_STALE_HANDLE);
    EXPECT(shmex_waitset_add(set, (void *)(uintptr_t)0x7777, &w), SHMEX_E_STALE_HANDLE);
    OK(shmex_waitset_add(set, watch, &w));
    OK(shmex_waitset_add(set, sub, &s));
    size_t again;
    OK(shmex_waitset_add(set, sub, &again));
    TRUE(w == 0 && s == 1 && again == 1);
    EXPECT(shmex_subscriber_free(sub), SHMEX_E_BUSY);
    EXPECT(shmex_watch_free(watch), SHMEX_E_BUSY);

    OK(shmex_waitset_wait(set, 1000, ready, 4, &n)); /* the watch: up */
    TRUE(n == 1 && ready[0] == w);
    OK(shmex_watch_try_event(watch, &event));
    TRUE(event == SHMEX_EVENT_UP);
    OK(shmex_watch_try_event(watch, &event));
    TRUE(event == SHMEX_EVENT_NONE);
    EXPECT(shmex_waitset_wait(set, 10, ready, 4, &n), SHMEX_E_TIMEOUT);
    OK(shmex_publisher_send(pub, "k", "x", 1, NULL));
    OK(shmex_waitset_wait(set, 1000, ready, 4, &n)); /* the subscriber */
    TRUE(n == 1 && ready[0] == s);
    shmex_sample *sample;
    OK(shmex_subscriber_try_receive(sub, &sample, NULL));
    TRUE(sample != NULL);
    OK(shmex_sample_release(sample));

    /* Removed: down for the watch and for the ports. */
    OK(shmex_node_remove_exchange(node, "news"));
    OK(shmex_watch_wait(watch, 1000, &event));
    TRUE(event == SHMEX_EVENT_DOWN);
    EXPECT(shmex_publisher_send(pub, "k", "x", 1, NULL), SHMEX_E_EXCHANGE_DOWN);
    EXPECT(shmex_subscriber_try_receive(sub, &sample, NULL), SHMEX_E_EXCHANGE_DOWN);
    EXPECT(shmex_watch_wait(watch, 10, &event), SHMEX_E_TIMEOUT);

    OK(shmex_waitset_free(set));
    EXPECT(shmex_waitset_free(set), SHMEX_E_STALE_HANDLE);
    OK(shmex_subscriber_free(sub));
    OK(shmex_publisher_free(pub));
    OK(shmex_exchange_free(ex));
    OK(shmex_watch_free(watch));
}

/* Another thread may use a port (one at a time): it releases a sample the
 * main thread received. */
static void *release_on_other_thread(void *sample) {
    return (void *)(intptr_t)shmex_sample_release(sample);
}

static void threads(shmex_node *node) {
    shmex_exchange *ex;
    shmex_producer *producer;
    shmex_consumer *consumer;
    shmex_sample *sample;
    OK(shmex_exchange_create(node, "threads", SHMEX_PATTERN_FAN_IN, NULL, &ex));
    OK(shmex_consumer_create(ex, &consumer));
    OK(shmex_producer_create(ex, &producer));
    OK(shmex_producer_send(producer, 1, "t", 1));
    OK(shmex_consumer_receive(consumer, 1000, &sample, NULL));
    pthread_t t;
    void *rc;
    TRUE(pthread_create(&t, NULL, release_on_other_thread, sample) == 0);
    TRUE(pthread_join(t, &rc) == 0);
    TRUE((intptr_t)rc == SHMEX_OK);
    OK(shmex_consumer_free(consumer));
    OK(shmex_producer_free(producer));
    OK(shmex_exchange_free(ex));
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s NAMESPACE\n", argv[0]);
        return 2;
    }
    TRUE(strcmp(shmex_error_string(SHMEX_E_QUEUE_FULL), "queue full") == 0);
    TRUE(strcmp(shmex_error_string(12345), "unknown status code") == 0);
    TRUE(strlen(shmex_version()) > 0);

    shmex_node *node;
    shmex_node_options options;
    OK(shmex_node_options_init(&options));
    options.namespace_name = argv[1];
    options.heartbeat_ms = 50;
    OK(shmex_node_create_with("errors", &options, &node));
    arguments_and_handles(argv[1], node);
    streams(node);
    pubsub_and_fanin(node);
    tasks(node);
    waitsets_and_watches(node);
    threads(node);
    OK(shmex_node_free(node));
    EXPECT(shmex_node_free(node), SHMEX_E_STALE_HANDLE);
    printf("ok: %d checks\n", checks);
    return 0;
}
