/*
 * The handle contract of the C API, table-driven: every function that takes
 * a handle is called, for each handle parameter, with NULL, a released
 * (stale) handle, forged values, and live handles of the wrong kind (an
 * object and a port's child). Each must return what the header's
 * conventions say (SHMEX_E_NULL, SHMEX_E_STALE_HANDLE), leave every
 * out-parameter untouched and every other live handle alive, and consume a
 * loan passed to a send/answer/submit/respond function whatever the outcome
 * (a loan of another port is SHMEX_E_INVALID_ARGUMENT, and consumed too).
 *
 * Prints "covered: FUNCTION KIND" for every row of the table (the Rust
 * driver checks these against the handle parameters of shmex.h),
 * then "ok: N checks"; exits 1 naming the first failed check.
 *
 *   handle_table NAMESPACE
 */
#include "shmex.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int checks, failures;

/* A failed check of the table: reported, and the table goes on. */
#define EXPECT(cond, ...)                                                      \
    do {                                                                       \
        checks++;                                                              \
        if (!(cond)) {                                                         \
            failures++;                                                        \
            fprintf(stderr, "FAIL: ");                                         \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, " (last error: %s)\n", shmex_last_error_message()); \
        }                                                                      \
    } while (0)

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        checks++;                                                              \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                    \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, " (last error: %s)\n", shmex_last_error_message()); \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

#define OK(call)                                                               \
    do {                                                                       \
        int rc_ = (call);                                                      \
        CHECK(rc_ == SHMEX_OK, "%s returned %d (%s)", #call, rc_,              \
              shmex_error_string(rc_));                                        \
    } while (0)

/* What a handle parameter names. PORT: any port a wait set can wait on. */
enum kind {
    NODE, EXCHANGE, CLIENT, SERVER, PUBLISHER, SUBSCRIBER, PRODUCER, CONSUMER,
    SUBMITTER, WORKER, WATCH, WAITSET, SAMPLE, LOAN, REQUEST, STREAM, DELIVERY,
    DEAD_LETTER, PORT, KINDS
};

static const char *const kind_names[KINDS] = {
    "node", "exchange", "client", "server", "publisher", "subscriber",
    "producer", "consumer", "submitter", "worker", "watch", "waitset",
    "sample", "loan", "request", "stream", "delivery", "dead_letter", "port",
};

static struct {
    void *live[KINDS];  /* alive for the whole table */
    void *stale[KINDS]; /* released before the table */
    void *question;     /* a live question (a sample) of the live client */
    void *loan;         /* the fresh loan of the call in progress, if any */
    _Alignas(16) unsigned char out[4][256]; /* out-parameters, kept 0xA5 */
} c;

#define OUT(i, type) ((type)(void *)c.out[i])

/* A valid payload type for the typed create/open rows. */
static const shmex_payload_type tbl_type = {.name = "u32", .size = 4, .align = 4, .hash = 7};

/* A fresh loan of the live port of kind `k`, for a call that consumes it. */
static shmex_loan *fresh(enum kind k) {
    shmex_loan *l = NULL;
    switch (k) {
    case CLIENT: OK(shmex_client_loan(c.live[CLIENT], 4, &l, NULL)); break;
    case SERVER: OK(shmex_server_loan(c.live[SERVER], 4, &l, NULL)); break;
    case PUBLISHER: OK(shmex_publisher_loan(c.live[PUBLISHER], 4, &l, NULL)); break;
    case PRODUCER: OK(shmex_producer_loan(c.live[PRODUCER], 4, &l, NULL)); break;
    case SUBMITTER: OK(shmex_submitter_loan(c.live[SUBMITTER], 4, &l, NULL)); break;
    default: CHECK(0, "no loans from a %s", kind_names[k]);
    }
    c.loan = l;
    return l;
}

#define L(k) (c.live[k])
#define F(k) fresh(k)

/* One handle parameter of one function: `call` passes `h` there and live
 * handles (or fresh loans, via F) everywhere else. `consumes`: the tested
 * parameter is a loan the function consumes; `owner` is then the port
 * whose loans it takes. */
struct row {
    const char *function;
    enum kind kind;
    int consumes;
    enum kind owner;
    int (*call)(void *h);
};

/* fn, tested kind, consumes the tested loan, whose port's loans it takes,
 * the call with `h` in the tested place. */
#define TABLE(X)                                                                              \
    X(shmex_node_free, NODE, 0, KINDS, shmex_node_free(h))                                   \
    X(shmex_node_remove_exchange, NODE, 0, KINDS, shmex_node_remove_exchange(h, "tbl"))     \
    X(shmex_exchange_create, NODE, 0, KINDS,                                                  \
      shmex_exchange_create(h, "tbl", SHMEX_PATTERN_FAN_IN, NULL, OUT(0, shmex_exchange **))) \
    X(shmex_exchange_open, NODE, 0, KINDS, shmex_exchange_open(h, "rpc", OUT(0, shmex_exchange **))) \
    X(shmex_exchange_open_or_create, NODE, 0, KINDS,                                          \
      shmex_exchange_open_or_create(h, "tbl", SHMEX_PATTERN_FAN_IN, NULL, OUT(0, shmex_exchange **))) \
    X(shmex_exchange_free, EXCHANGE, 0, KINDS, shmex_exchange_free(h))                       \
    X(shmex_exchange_info, EXCHANGE, 0, KINDS,                                                \
      shmex_exchange_info(h, OUT(0, shmex_limits *), OUT(1, uint32_t *)))                    \
    X(shmex_exchange_task_stats, EXCHANGE, 0, KINDS,                                          \
      shmex_exchange_task_stats(h, OUT(0, shmex_task_stats *)))                               \
    X(shmex_exchange_payload_type, EXCHANGE, 0, KINDS,                                        \
      shmex_exchange_payload_type(h, OUT(0, shmex_payload_type *)))                           \
    X(shmex_exchange_create_typed, NODE, 0, KINDS,                                            \
      shmex_exchange_create_typed(h, "tbl", SHMEX_PATTERN_FAN_IN, NULL, &tbl_type,            \
                                  OUT(0, shmex_exchange **)))                                 \
    X(shmex_exchange_open_typed, NODE, 0, KINDS,                                              \
      shmex_exchange_open_typed(h, "rpc", &tbl_type, OUT(0, shmex_exchange **)))             \
    X(shmex_exchange_response_type, EXCHANGE, 0, KINDS,                                       \
      shmex_exchange_response_type(h, OUT(0, shmex_payload_type *)))                          \
    X(shmex_exchange_create_typed_rpc, NODE, 0, KINDS,                                        \
      shmex_exchange_create_typed_rpc(h, "tbl", NULL, &tbl_type, &tbl_type,                   \
                                      OUT(0, shmex_exchange **)))                             \
    X(shmex_exchange_open_typed_rpc, NODE, 0, KINDS,                                          \
      shmex_exchange_open_typed_rpc(h, "rpc", &tbl_type, &tbl_type, OUT(0, shmex_exchange **))) \
    X(shmex_sample_get_info, SAMPLE, 0, KINDS, shmex_sample_get_info(h, OUT(0, shmex_sample_info *))) \
    X(shmex_sample_key, SAMPLE, 0, KINDS, shmex_sample_key(h, OUT(0, const char **)))        \
    X(shmex_sample_release, SAMPLE, 0, KINDS, shmex_sample_release(h))                       \
    X(shmex_loan_get, LOAN, 0, KINDS, shmex_loan_get(h, OUT(0, void **), OUT(1, size_t *)))  \
    X(shmex_loan_set_len, LOAN, 0, KINDS, shmex_loan_set_len(h, 1))                          \
    X(shmex_loan_release, LOAN, 0, KINDS, shmex_loan_release(h))                             \
    X(shmex_client_create, EXCHANGE, 0, KINDS, shmex_client_create(h, OUT(0, shmex_client **))) \
    X(shmex_client_free, CLIENT, 0, KINDS, shmex_client_free(h))                             \
    X(shmex_client_loan, CLIENT, 0, KINDS,                                                    \
      shmex_client_loan(h, 4, OUT(0, shmex_loan **), OUT(1, void **)))                       \
    X(shmex_client_send, CLIENT, 0, KINDS, shmex_client_send(h, 9, "x", 1))           \
    X(shmex_client_send_loan, CLIENT, 0, KINDS, shmex_client_send_loan(h, 9, F(CLIENT))) \
    X(shmex_client_send_loan, LOAN, 1, CLIENT, shmex_client_send_loan(L(CLIENT), 9, h)) \
    X(shmex_client_request_stream, CLIENT, 0, KINDS, shmex_client_request_stream(h, 9, "x", 1, 2)) \
    X(shmex_client_cancel, CLIENT, 0, KINDS, shmex_client_cancel(h, 9, OUT(0, int *)))      \
    X(shmex_client_answer, CLIENT, 0, KINDS, shmex_client_answer(h, c.question, "x", 1))     \
    X(shmex_client_answer, SAMPLE, 0, KINDS, shmex_client_answer(L(CLIENT), h, "x", 1))     \
    X(shmex_client_answer_loan, CLIENT, 0, KINDS,                                             \
      shmex_client_answer_loan(h, c.question, F(CLIENT)))                                      \
    X(shmex_client_answer_loan, SAMPLE, 0, KINDS,                                             \
      shmex_client_answer_loan(L(CLIENT), h, F(CLIENT)))                                      \
    X(shmex_client_answer_loan, LOAN, 1, CLIENT, shmex_client_answer_loan(L(CLIENT), c.question, h)) \
    X(shmex_client_try_receive, CLIENT, 0, KINDS,                                             \
      shmex_client_try_receive(h, OUT(0, shmex_sample **), OUT(1, shmex_sample_info *),       \
                               OUT(2, shmex_failure *)))                                      \
    X(shmex_client_receive, CLIENT, 0, KINDS,                                                 \
      shmex_client_receive(h, 0, OUT(0, shmex_sample **), OUT(1, shmex_sample_info *),        \
                           OUT(2, shmex_failure *)))                                          \
    X(shmex_client_check_servers, CLIENT, 0, KINDS, shmex_client_check_servers(h, OUT(0, size_t *))) \
    X(shmex_server_create, EXCHANGE, 0, KINDS, shmex_server_create(h, OUT(0, shmex_server **))) \
    X(shmex_server_free, SERVER, 0, KINDS, shmex_server_free(h))                             \
    X(shmex_server_loan, SERVER, 0, KINDS,                                                    \
      shmex_server_loan(h, 4, OUT(0, shmex_loan **), OUT(1, void **)))                       \
    X(shmex_server_try_receive, SERVER, 0, KINDS,                                             \
      shmex_server_try_receive(h, OUT(0, shmex_request **), OUT(1, shmex_request_info *)))   \
    X(shmex_server_receive, SERVER, 0, KINDS,                                                 \
      shmex_server_receive(h, 0, OUT(0, shmex_request **), OUT(1, shmex_request_info *),      \
                           OUT(2, shmex_failure *)))                                          \
    X(shmex_request_get_info, REQUEST, 0, KINDS,                                              \
      shmex_request_get_info(h, OUT(0, shmex_request_info *)))                                \
    X(shmex_request_respond, REQUEST, 0, KINDS, shmex_request_respond(h, "x", 1))            \
    X(shmex_request_respond_loan, REQUEST, 0, KINDS, shmex_request_respond_loan(h, F(SERVER))) \
    X(shmex_request_respond_loan, LOAN, 1, SERVER, shmex_request_respond_loan(L(REQUEST), h)) \
    X(shmex_request_ask, REQUEST, 0, KINDS, shmex_request_ask(h, "x", 1))                    \
    X(shmex_request_ask_loan, REQUEST, 0, KINDS, shmex_request_ask_loan(h, F(SERVER)))       \
    X(shmex_request_ask_loan, LOAN, 1, SERVER, shmex_request_ask_loan(L(REQUEST), h))        \
    X(shmex_request_respond_stream, REQUEST, 0, KINDS,                                        \
      shmex_request_respond_stream(h, OUT(0, shmex_stream **)))                               \
    X(shmex_request_release, REQUEST, 0, KINDS, shmex_request_release(h))                    \
    X(shmex_stream_loan, STREAM, 0, KINDS,                                                    \
      shmex_stream_loan(h, 4, OUT(0, shmex_loan **), OUT(1, void **)))                       \
    X(shmex_stream_send_loan, STREAM, 0, KINDS, shmex_stream_send_loan(h, F(SERVER), 0))               \
    X(shmex_stream_send_loan, LOAN, 1, SERVER, shmex_stream_send_loan(L(STREAM), h, 0))                \
    X(shmex_stream_send, STREAM, 0, KINDS, shmex_stream_send(h, "x", 1))           \
    X(shmex_stream_status, STREAM, 0, KINDS,                                                  \
      shmex_stream_status(h, OUT(0, int *), OUT(1, uint64_t *)))                              \
    X(shmex_stream_end, STREAM, 0, KINDS, shmex_stream_end(h))                               \
    X(shmex_stream_abort, STREAM, 0, KINDS, shmex_stream_abort(h))                           \
    X(shmex_publisher_create, EXCHANGE, 0, KINDS,                                             \
      shmex_publisher_create(h, OUT(0, shmex_publisher **)))                                  \
    X(shmex_publisher_free, PUBLISHER, 0, KINDS, shmex_publisher_free(h))                    \
    X(shmex_publisher_loan, PUBLISHER, 0, KINDS,                                              \
      shmex_publisher_loan(h, 4, OUT(0, shmex_loan **), OUT(1, void **)))                    \
    X(shmex_publisher_send, PUBLISHER, 0, KINDS,                                           \
      shmex_publisher_send(h, "k", "x", 1, OUT(0, shmex_published *)))                    \
    X(shmex_publisher_send_loan, PUBLISHER, 0, KINDS,                                      \
      shmex_publisher_send_loan(h, "k", F(PUBLISHER), OUT(0, shmex_published *)))         \
    X(shmex_publisher_send_loan, LOAN, 1, PUBLISHER,                                       \
      shmex_publisher_send_loan(L(PUBLISHER), "k", h, OUT(0, shmex_published *)))         \
    X(shmex_subscriber_create, EXCHANGE, 0, KINDS,                                            \
      shmex_subscriber_create(h, "#", 0, OUT(0, shmex_subscriber **)))                        \
    X(shmex_subscriber_free, SUBSCRIBER, 0, KINDS, shmex_subscriber_free(h))                 \
    X(shmex_subscriber_try_receive, SUBSCRIBER, 0, KINDS,                                     \
      shmex_subscriber_try_receive(h, OUT(0, shmex_sample **), OUT(1, shmex_sample_info *))) \
    X(shmex_subscriber_receive, SUBSCRIBER, 0, KINDS,                                         \
      shmex_subscriber_receive(h, 0, OUT(0, shmex_sample **), OUT(1, shmex_sample_info *)))  \
    X(shmex_subscriber_gaps, SUBSCRIBER, 0, KINDS, shmex_subscriber_gaps(h, OUT(0, uint64_t *))) \
    X(shmex_producer_create, EXCHANGE, 0, KINDS,                                              \
      shmex_producer_create(h, OUT(0, shmex_producer **)))                                    \
    X(shmex_producer_free, PRODUCER, 0, KINDS, shmex_producer_free(h))                       \
    X(shmex_producer_loan, PRODUCER, 0, KINDS,                                                \
      shmex_producer_loan(h, 4, OUT(0, shmex_loan **), OUT(1, void **)))                     \
    X(shmex_producer_send, PRODUCER, 0, KINDS, shmex_producer_send(h, 9, "x", 1))            \
    X(shmex_producer_send_loan, PRODUCER, 0, KINDS, shmex_producer_send_loan(h, 9, F(PRODUCER))) \
    X(shmex_producer_send_loan, LOAN, 1, PRODUCER, shmex_producer_send_loan(L(PRODUCER), 9, h)) \
    X(shmex_consumer_create, EXCHANGE, 0, KINDS,                                              \
      shmex_consumer_create(h, OUT(0, shmex_consumer **)))                                    \
    X(shmex_consumer_free, CONSUMER, 0, KINDS, shmex_consumer_free(h))                       \
    X(shmex_consumer_try_receive, CONSUMER, 0, KINDS,                                         \
      shmex_consumer_try_receive(h, OUT(0, shmex_sample **), OUT(1, shmex_sample_info *)))   \
    X(shmex_consumer_receive, CONSUMER, 0, KINDS,                                             \
      shmex_consumer_receive(h, 0, OUT(0, shmex_sample **), OUT(1, shmex_sample_info *)))    \
    X(shmex_submitter_create, EXCHANGE, 0, KINDS,                                             \
      shmex_submitter_create(h, OUT(0, shmex_submitter **)))                                  \
    X(shmex_submitter_free, SUBMITTER, 0, KINDS, shmex_submitter_free(h))                    \
    X(shmex_submitter_loan, SUBMITTER, 0, KINDS,                                              \
      shmex_submitter_loan(h, 4, OUT(0, shmex_loan **), OUT(1, void **)))                    \
    X(shmex_submitter_send, SUBMITTER, 0, KINDS, shmex_submitter_send(h, 1, 9, "x", 1, 0)) \
    X(shmex_submitter_send_loan, SUBMITTER, 0, KINDS,                                       \
      shmex_submitter_send_loan(h, 1, 9, F(SUBMITTER)))                                     \
    X(shmex_submitter_send_loan, LOAN, 1, SUBMITTER,                                        \
      shmex_submitter_send_loan(L(SUBMITTER), 1, 9, h))                                     \
    X(shmex_worker_create, EXCHANGE, 0, KINDS, shmex_worker_create(h, 1, OUT(0, shmex_worker **))) \
    X(shmex_worker_free, WORKER, 0, KINDS, shmex_worker_free(h))                             \
    X(shmex_worker_try_receive, WORKER, 0, KINDS,                                                \
      shmex_worker_try_receive(h, OUT(0, shmex_delivery **), OUT(1, shmex_delivery_info *)))    \
    X(shmex_worker_receive, WORKER, 0, KINDS,                                                    \
      shmex_worker_receive(h, 0, OUT(0, shmex_delivery **), OUT(1, shmex_delivery_info *)))     \
    X(shmex_worker_ack, WORKER, 0, KINDS, shmex_worker_ack(h, 1))                            \
    X(shmex_worker_nack, WORKER, 0, KINDS, shmex_worker_nack(h, 1, 1))                       \
    X(shmex_worker_held, WORKER, 0, KINDS, shmex_worker_held(h, OUT(0, uint32_t *)))         \
    X(shmex_delivery_get_info, DELIVERY, 0, KINDS,                                            \
      shmex_delivery_get_info(h, OUT(0, shmex_delivery_info *)))                              \
    X(shmex_delivery_ack, DELIVERY, 0, KINDS, shmex_delivery_ack(h))                         \
    X(shmex_delivery_nack, DELIVERY, 0, KINDS, shmex_delivery_nack(h, 1))                    \
    X(shmex_delivery_release, DELIVERY, 0, KINDS, shmex_delivery_release(h))                 \
    X(shmex_worker_try_receive_dead_letter, WORKER, 0, KINDS,                                        \
      shmex_worker_try_receive_dead_letter(h, OUT(0, shmex_dead_letter **), OUT(1, shmex_dead_letter_info *))) \
    X(shmex_dead_letter_get_info, DEAD_LETTER, 0, KINDS,                                      \
      shmex_dead_letter_get_info(h, OUT(0, shmex_dead_letter_info *)))                        \
    X(shmex_dead_letter_release, DEAD_LETTER, 0, KINDS, shmex_dead_letter_release(h))        \
    X(shmex_watch_create, NODE, 0, KINDS, shmex_watch_create(h, "rpc", OUT(0, shmex_watch **))) \
    X(shmex_watch_free, WATCH, 0, KINDS, shmex_watch_free(h))                                \
    X(shmex_watch_try_event, WATCH, 0, KINDS, shmex_watch_try_event(h, OUT(0, int *)))      \
    X(shmex_watch_wait, WATCH, 0, KINDS, shmex_watch_wait(h, 0, OUT(0, int *)))             \
    X(shmex_watch_is_up, WATCH, 0, KINDS, shmex_watch_is_up(h, OUT(0, int *)))              \
    X(shmex_waitset_add, WAITSET, 0, KINDS, shmex_waitset_add(h, L(SUBSCRIBER), OUT(0, size_t *))) \
    X(shmex_waitset_add, PORT, 0, KINDS, shmex_waitset_add(L(WAITSET), h, OUT(0, size_t *))) \
    X(shmex_waitset_wait, WAITSET, 0, KINDS,                                                  \
      shmex_waitset_wait(h, 0, OUT(0, size_t *), 4, OUT(1, size_t *)))                        \
    X(shmex_waitset_free, WAITSET, 0, KINDS, shmex_waitset_free(h))

#define DEFINE(fn, k, consumes, owner, expr)                                   \
    static int call_##fn##_##k(void *h) { return expr; }
TABLE(DEFINE)

#define ENTRY(fn, k, consumes, owner, expr) {#fn, k, consumes, owner, call_##fn##_##k},
static const struct row table[] = {TABLE(ENTRY)};

/* True when live handle `h` of kind `k` still answers. */
static int alive(enum kind k, void *h) {
    shmex_loan *l;
    int rc;
    union {
        shmex_sample_info s;
        shmex_request_info r;
        shmex_delivery_info d;
        shmex_dead_letter_info x;
        shmex_limits lim;
        size_t n;
        uint64_t u;
        uint32_t w;
        int i;
    } o;
    switch (k) {
    case NODE: rc = shmex_node_remove_exchange(h, "no-such-exchange"); break;
    case EXCHANGE: rc = shmex_exchange_info(h, &o.lim, NULL); break;
    case CLIENT: case SERVER: case PUBLISHER: case PRODUCER: case SUBMITTER:
        c.live[k] = h;
        rc = shmex_loan_release(fresh(k));
        c.loan = NULL;
        break;
    case SUBSCRIBER: case PORT: rc = shmex_subscriber_gaps(h, &o.u); break;
    case CONSUMER: rc = shmex_consumer_receive(h, 0, (shmex_sample **)&l, NULL); break;
    case WORKER: rc = shmex_worker_held(h, &o.w); break;
    case WATCH: rc = shmex_watch_is_up(h, &o.i); break;
    case WAITSET: rc = shmex_waitset_wait(h, 0, &o.n, 1, &o.n); break;
    case SAMPLE: rc = shmex_sample_get_info(h, &o.s); break;
    case LOAN: rc = shmex_loan_get(h, (void **)&l, NULL); break;
    case REQUEST: rc = shmex_request_get_info(h, &o.r); break;
    case STREAM: rc = shmex_stream_status(h, &o.i, NULL); break;
    case DELIVERY: rc = shmex_delivery_get_info(h, &o.d); break;
    case DEAD_LETTER: rc = shmex_dead_letter_get_info(h, &o.x); break;
    default: return 0;
    }
    return rc != SHMEX_E_STALE_HANDLE && rc != SHMEX_E_NULL;
}

static int untouched_outs(void) {
    for (size_t i = 0; i < sizeof c.out; i++)
        if (((unsigned char *)c.out)[i] != 0xA5)
            return 0;
    return 1;
}

/* Calls row `r` with `bad` (described by `what`), expecting `code`; then
 * checks the out-parameters, the live handles and the loans. */
static void try_row(const struct row *r, void *bad, const char *what, int code) {
    memset(c.out, 0xA5, sizeof c.out);
    c.loan = NULL;
    int rc = r->call(bad);
    EXPECT(rc == code, "%s with %s as its %s returned %d (%s), expected %d (%s)",
          r->function, what, kind_names[r->kind], rc, shmex_error_string(rc), code,
          shmex_error_string(code));
    EXPECT(untouched_outs(), "%s with %s as its %s wrote an out-parameter", r->function,
          what, kind_names[r->kind]);
    if (c.loan) /* the loan of a valid place: consumed whatever the outcome */
        EXPECT(shmex_loan_release(c.loan) == SHMEX_E_STALE_HANDLE,
              "%s with %s as its %s did not consume its loan", r->function, what,
              kind_names[r->kind]);
    EXPECT(alive(SAMPLE, c.question), "%s with %s as its %s: the question died",
           r->function, what, kind_names[r->kind]);
    for (int k = 0; k < KINDS; k++)
        EXPECT(alive(k, c.live[k]), "%s with %s as its %s: the live %s died", r->function,
              what, kind_names[r->kind], kind_names[k]);
}

static void run_row(const struct row *r) {
    static const uintptr_t forged[] = {
        0x1, 0x12345, 0xdeadbeef00000007u, 0x7fffffffffffffffu, UINTPTR_MAX,
        (uintptr_t)1 << 63 | 5, (uintptr_t)1 << 63 | 0x1234500010002u,
    };
    char what[64];
    try_row(r, NULL, "NULL", SHMEX_E_NULL);
    try_row(r, c.stale[r->kind], "a released handle", SHMEX_E_STALE_HANDLE);
    for (size_t i = 0; i < sizeof forged / sizeof forged[0]; i++) {
        snprintf(what, sizeof what, "forged %#jx", (uintmax_t)forged[i]);
        try_row(r, (void *)forged[i], what, SHMEX_E_STALE_HANDLE);
    }
    for (int i = 0; i < 4; i++) {
        uintptr_t h = (uintptr_t)rand() << 33 ^ (uintptr_t)rand() << 16 ^ (uintptr_t)rand();
        snprintf(what, sizeof what, "random %#jx", (uintmax_t)h);
        try_row(r, (void *)h, what, SHMEX_E_STALE_HANDLE);
    }
    /* Live handles of another kind: an object, and a port's child. */
    enum kind object = r->kind == NODE ? EXCHANGE : NODE;
    enum kind child = r->kind == LOAN ? SAMPLE : LOAN;
    snprintf(what, sizeof what, "a live %s", kind_names[object]);
    try_row(r, c.live[object], what, SHMEX_E_STALE_HANDLE);
    snprintf(what, sizeof what, "a live %s", kind_names[child]);
    try_row(r, c.live[child], what, SHMEX_E_STALE_HANDLE);
    if (r->consumes) {
        /* A loan of another port of the same kind: invalid, and consumed. */
        enum kind owner = r->owner == SERVER ? CLIENT : SERVER;
        shmex_loan *foreign = fresh(owner);
        try_row(r, foreign, "another port's loan", SHMEX_E_INVALID_ARGUMENT);
        EXPECT(shmex_loan_release(foreign) == SHMEX_E_STALE_HANDLE,
              "%s did not consume another port's loan", r->function);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s NAMESPACE\n", argv[0]);
        return 2;
    }
    srand(17);
    shmex_node_options options;
    OK(shmex_node_options_init(&options));
    options.namespace_name = argv[1];
    OK(shmex_node_create_with("stale", &options, (shmex_node **)&c.stale[NODE]));
    OK(shmex_node_free(c.stale[NODE]));
    OK(shmex_node_create_with("table", &options, (shmex_node **)&c.live[NODE]));
    shmex_node *node = c.live[NODE];
    shmex_exchange *rpc, *ps, *fi, *tk;
    OK(shmex_exchange_create(node, "rpc", SHMEX_PATTERN_REQUEST_RESPONSE, NULL, &rpc));
    OK(shmex_exchange_create(node, "ps", SHMEX_PATTERN_PUBLISH_SUBSCRIBE, NULL, &ps));
    OK(shmex_exchange_create(node, "fi", SHMEX_PATTERN_FAN_IN, NULL, &fi));
    OK(shmex_exchange_create(node, "tk", SHMEX_PATTERN_TASKS, NULL, &tk));
    c.live[EXCHANGE] = rpc;
    OK(shmex_exchange_open(node, "rpc", (shmex_exchange **)&c.stale[EXCHANGE]));
    OK(shmex_exchange_free(c.stale[EXCHANGE]));

    /* Ports: a released one, then the live one, of each kind. */
    for (int live = 0; live < 2; live++) {
        void **p = live ? c.live : c.stale;
        OK(shmex_client_create(rpc, (shmex_client **)&p[CLIENT]));
        OK(shmex_server_create(rpc, (shmex_server **)&p[SERVER]));
        OK(shmex_publisher_create(ps, (shmex_publisher **)&p[PUBLISHER]));
        OK(shmex_subscriber_create(ps, "#", 0, (shmex_subscriber **)&p[SUBSCRIBER]));
        OK(shmex_producer_create(fi, (shmex_producer **)&p[PRODUCER]));
        OK(shmex_consumer_create(fi, (shmex_consumer **)&p[CONSUMER]));
        OK(shmex_submitter_create(tk, (shmex_submitter **)&p[SUBMITTER]));
        OK(shmex_worker_create(tk, 8, (shmex_worker **)&p[WORKER]));
        OK(shmex_watch_create(node, "rpc", (shmex_watch **)&p[WATCH]));
        OK(shmex_waitset_create((shmex_waitset **)&p[WAITSET]));
        p[PORT] = p[SUBSCRIBER];
        if (!live) {
            OK(shmex_client_free(p[CLIENT]));
            OK(shmex_server_free(p[SERVER]));
            OK(shmex_publisher_free(p[PUBLISHER]));
            OK(shmex_subscriber_free(p[SUBSCRIBER]));
            OK(shmex_producer_free(p[PRODUCER]));
            OK(shmex_consumer_free(p[CONSUMER]));
            OK(shmex_submitter_free(p[SUBMITTER]));
            OK(shmex_worker_free(p[WORKER]));
            OK(shmex_watch_free(p[WATCH]));
            OK(shmex_waitset_free(p[WAITSET]));
        }
    }

    /* Children: two of each kind, the first released. */
    shmex_sample *samples[2];
    shmex_loan *loans[2];
    shmex_request *requests[2];
    shmex_stream *streams[2];
    shmex_delivery *deliveries[2];
    shmex_dead_letter *dead[2];
    for (int i = 0; i < 2; i++) {
        OK(shmex_publisher_send(c.live[PUBLISHER], "k", "x", 1, NULL));
        OK(shmex_subscriber_receive(c.live[SUBSCRIBER], 1000, &samples[i], NULL));
        OK(shmex_publisher_loan(c.live[PUBLISHER], 4, &loans[i], NULL));
        OK(shmex_client_send(c.live[CLIENT], i, "q", 1));
        OK(shmex_server_receive(c.live[SERVER], 1000, &requests[i], NULL, NULL));
        shmex_request *r;
        OK(shmex_client_request_stream(c.live[CLIENT], 10 + i, "s", 1, 4));
        OK(shmex_server_receive(c.live[SERVER], 1000, &r, NULL, NULL));
        OK(shmex_request_respond_stream(r, &streams[i]));
        OK(shmex_submitter_send(c.live[SUBMITTER], 1, i, "t", 1, 0));
        OK(shmex_worker_receive(c.live[WORKER], 1000, &deliveries[i], NULL));
        shmex_delivery *d;
        OK(shmex_submitter_send(c.live[SUBMITTER], 1, 20 + i, "t", 1, 0));
        OK(shmex_worker_receive(c.live[WORKER], 1000, &d, NULL));
        OK(shmex_delivery_nack(d, 0));
        OK(shmex_worker_try_receive_dead_letter(c.live[WORKER], &dead[i], NULL));
        CHECK(dead[i] != NULL, "no dead letter");
    }
    shmex_request *asked;
    OK(shmex_client_send(c.live[CLIENT], 30, "q", 1));
    OK(shmex_server_receive(c.live[SERVER], 1000, &asked, NULL, NULL));
    OK(shmex_request_ask(asked, "?", 1));
    OK(shmex_client_receive(c.live[CLIENT], 1000, (shmex_sample **)&c.question, NULL, NULL));
    OK(shmex_sample_release(samples[0]));
    OK(shmex_loan_release(loans[0]));
    OK(shmex_request_release(requests[0]));
    OK(shmex_stream_abort(streams[0]));
    OK(shmex_delivery_release(deliveries[0]));
    OK(shmex_dead_letter_release(dead[0]));
    c.stale[SAMPLE] = samples[0], c.live[SAMPLE] = samples[1];
    c.stale[LOAN] = loans[0], c.live[LOAN] = loans[1];
    c.stale[REQUEST] = requests[0], c.live[REQUEST] = requests[1];
    c.stale[STREAM] = streams[0], c.live[STREAM] = streams[1];
    c.stale[DELIVERY] = deliveries[0], c.live[DELIVERY] = deliveries[1];
    c.stale[DEAD_LETTER] = dead[0], c.live[DEAD_LETTER] = dead[1];

    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        run_row(&table[i]);
        printf("covered: %s %s\n", table[i].function, kind_names[table[i].kind]);
    }

    if (failures) {
        fprintf(stderr, "%d of %d checks failed\n", failures, checks);
        return 1;
    }

    /* Everything live is still usable, and frees cleanly. */
    OK(shmex_sample_release(c.live[SAMPLE]));
    OK(shmex_sample_release(c.question));
    OK(shmex_loan_release(c.live[LOAN]));
    OK(shmex_request_release(c.live[REQUEST]));
    OK(shmex_stream_abort(c.live[STREAM]));
    OK(shmex_delivery_release(c.live[DELIVERY]));
    OK(shmex_dead_letter_release(c.live[DEAD_LETTER]));
    OK(shmex_waitset_free(c.live[WAITSET]));
    OK(shmex_client_free(c.live[CLIENT]));
    OK(shmex_server_free(c.live[SERVER]));
    OK(shmex_publisher_free(c.live[PUBLISHER]));
    OK(shmex_subscriber_free(c.live[SUBSCRIBER]));
    OK(shmex_producer_free(c.live[PRODUCER]));
    OK(shmex_consumer_free(c.live[CONSUMER]));
    OK(shmex_submitter_free(c.live[SUBMITTER]));
    OK(shmex_worker_free(c.live[WORKER]));
    OK(shmex_watch_free(c.live[WATCH]));
    OK(shmex_exchange_free(rpc));
    OK(shmex_exchange_free(ps));
    OK(shmex_exchange_free(fi));
    OK(shmex_exchange_free(tk));
    OK(shmex_node_free(node));
    printf("ok: %d checks\n", checks);
    return 0;
}
