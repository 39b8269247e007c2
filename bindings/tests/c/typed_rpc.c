/*
 * Typed request-response from C, run by tests/typed.rs:
 *
 *   typed_rpc NAMESPACE QUERY_HASH ANSWER_HASH
 *
 * Creates the request-response exchange "adder" for requests of
 * `struct query` and responses of `struct answer` (the layouts of the Rust
 * test's `Query` and `Answer`, whose layout hashes are given); prints the
 * response descriptor read back ("response NAME SIZE ALIGN HASH"), attaches
 * a server and prints "ready"; answers one request (from Rust), read in
 * place, with the sum written in place ("served A B"); then checks that an
 * open with another response type is refused ("refused MESSAGE") and one
 * with the same types works; answers a last request (Rust's goodbye, sent
 * once it has its answer) and exits 0, or 1 naming the failed call.
 */
#include "shmex.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(call)                                                            \
    do {                                                                       \
        int rc_ = (call);                                                      \
        if (rc_ != SHMEX_OK) {                                                 \
            fprintf(stderr, "%s:%d: %s: %s: %s\n", __FILE__, __LINE__, #call,  \
                    shmex_error_string(rc_), shmex_last_error_message());      \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

struct query {
    uint32_t a;
    uint32_t b;
    uint64_t seq;
};

struct answer {
    uint64_t sum;
    uint64_t seq;
};

static shmex_payload_type describe(const char *name, uint64_t size, uint32_t align,
                                   uint64_t hash) {
    shmex_payload_type t;
    memset(&t, 0, sizeof t);
    strncpy(t.name, name, SHMEX_TYPE_NAME_CAPACITY - 1);
    t.size = size;
    t.align = align;
    t.hash = hash;
    return t;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: typed_rpc NAMESPACE QUERY_HASH ANSWER_HASH\n");
        return 2;
    }
    const char *ns = argv[1];
    shmex_payload_type query_type = describe("Query", sizeof(struct query),
                                             _Alignof(struct query), strtoull(argv[2], NULL, 10));
    shmex_payload_type answer_type = describe(
        "Answer", sizeof(struct answer), _Alignof(struct answer), strtoull(argv[3], NULL, 10));

    shmex_node *node;
    shmex_exchange *ex;
    shmex_server *server;
    CHECK(shmex_node_create("c-typed-rpc", ns, NULL, &node));
    CHECK(shmex_exchange_create_typed_rpc(node, "adder", NULL, &query_type, &answer_type, &ex));
    shmex_payload_type got;
    CHECK(shmex_exchange_response_type(ex, &got));
    printf("response %s %" PRIu64 " %" PRIu32 " %" PRIu64 "\n", got.name, got.size, got.align,
           got.hash);
    CHECK(shmex_server_create(ex, &server));
    printf("ready\n");
    fflush(stdout);

    shmex_request *request;
    shmex_request_info info;
    CHECK(shmex_server_receive(server, 30000, &request, &info, NULL));
    if (info.len != sizeof(struct query)) {
        fprintf(stderr, "request of %zu bytes\n", info.len);
        return 1;
    }
    const struct query *q = info.data;
    shmex_loan *loan;
    void *data;
    CHECK(shmex_server_loan(server, sizeof(struct answer), &loan, &data));
    struct answer *a = data;
    a->sum = (uint64_t)q->a + q->b;
    a->seq = q->seq;
    printf("served %" PRIu32 " %" PRIu32 "\n", q->a, q->b);
    CHECK(shmex_request_respond_loan(request, loan));

    shmex_exchange *other;
    shmex_payload_type wrong = describe("Other", 16, 8, 1);
    int rc = shmex_exchange_open_typed_rpc(node, "adder", &query_type, &wrong, &other);
    if (rc != SHMEX_E_MISMATCH) {
        fprintf(stderr, "open with another response type returned %d\n", rc);
        return 1;
    }
    printf("refused %s\n", shmex_last_error_message());
    CHECK(shmex_exchange_open_typed_rpc(node, "adder", &query_type, &answer_type, &other));
    CHECK(shmex_exchange_free(other));
    CHECK(shmex_server_receive(server, 30000, &request, &info, NULL));
    CHECK(shmex_request_respond(request, "", 0));
    printf("done\n");
    CHECK(shmex_server_free(server));
    CHECK(shmex_exchange_free(ex));
    CHECK(shmex_node_free(node));
    return 0;
}
