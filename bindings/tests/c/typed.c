/*
 * Typed exchanges from C, run by tests/typed.rs:
 *
 *   typed NAMESPACE HASH
 *
 * Creates the publish-subscribe exchange "points" for `struct point`, the
 * layout of the Rust test's `Point` whose layout hash is HASH; prints the
 * descriptor read back ("type NAME SIZE ALIGN HASH"), subscribes and prints
 * "ready"; receives one point (from Rust) in place and prints "got X Y SEQ";
 * then checks that an open as another type is refused ("refused MESSAGE")
 * (and, before creating, that bad descriptors are: "refusals ok")
 * and an open as the same type works. Exits 0, or 1 naming the failed call.
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

struct point {
    float x;
    float y;
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
    if (argc != 3) {
        fprintf(stderr, "usage: typed NAMESPACE HASH\n");
        return 2;
    }
    const char *ns = argv[1];
    uint64_t hash = strtoull(argv[2], NULL, 10);
    shmex_payload_type point_type =
        describe("Point", sizeof(struct point), _Alignof(struct point), hash);

    shmex_node *node;
    shmex_exchange *ex;
    shmex_subscriber *sub;
    CHECK(shmex_node_create("c-typed", ns, NULL, &node));
    /* Refused descriptors: over-aligned, name without its NUL, NULL. */
    shmex_payload_type wide = describe("Wide", 64, 64, 1);
    int bad = shmex_exchange_create_typed(node, "wide", SHMEX_PATTERN_FAN_IN, NULL, &wide, &ex);
    if (bad != SHMEX_E_INVALID_ARGUMENT || !strstr(shmex_last_error_message(), "alignment 64")) {
        fprintf(stderr, "over-aligned type: %d %s\n", bad, shmex_last_error_message());
        return 1;
    }
    shmex_payload_type unterminated = point_type;
    memset(unterminated.name, 'a', SHMEX_TYPE_NAME_CAPACITY);
    bad = shmex_exchange_create_typed(node, "bad", SHMEX_PATTERN_FAN_IN, NULL, &unterminated, &ex);
    if (bad != SHMEX_E_INVALID_ARGUMENT) {
        fprintf(stderr, "unterminated name: %d\n", bad);
        return 1;
    }
    bad = shmex_exchange_create_typed(node, "bad", SHMEX_PATTERN_FAN_IN, NULL, NULL, &ex);
    if (bad != SHMEX_E_NULL) {
        fprintf(stderr, "NULL type: %d\n", bad);
        return 1;
    }
    printf("refusals ok\n");

    CHECK(shmex_exchange_create_typed(node, "points", SHMEX_PATTERN_PUBLISH_SUBSCRIBE, NULL,
                                      &point_type, &ex));
    shmex_payload_type got;
    CHECK(shmex_exchange_payload_type(ex, &got));
    printf("type %s %" PRIu64 " %" PRIu32 " %" PRIu64 "\n", got.name, got.size, got.align,
           got.hash);
    CHECK(shmex_subscriber_create(ex, "points", 0, &sub));
    printf("ready\n");
    fflush(stdout);

    shmex_sample *sample;
    shmex_sample_info info;
    CHECK(shmex_subscriber_receive(sub, 30000, &sample, &info));
    if (info.len != sizeof(struct point)) {
        fprintf(stderr, "payload of %zu bytes\n", info.len);
        return 1;
    }
    const struct point *p = info.data;
    printf("got %g %g %" PRIu64 "\n", p->x, p->y, p->seq);
    CHECK(shmex_sample_release(sample));

    shmex_exchange *other;
    shmex_payload_type wrong = describe("Pixel", 16, 8, hash + 1);
    int rc = shmex_exchange_open_typed(node, "points", &wrong, &other);
    if (rc != SHMEX_E_MISMATCH) {
        fprintf(stderr, "open as Pixel returned %d\n", rc);
        return 1;
    }
    printf("refused %s\n", shmex_last_error_message());
    CHECK(shmex_exchange_open_typed(node, "points", &point_type, &other));
    CHECK(shmex_exchange_free(other));

    CHECK(shmex_subscriber_free(sub));
    CHECK(shmex_exchange_free(ex));
    CHECK(shmex_node_free(node));
    printf("done\n");
    return 0;
}
