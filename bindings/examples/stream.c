/*
 * A chunked response from C: the client asks for a "file" of PARTS parts with
 * a window of 4 (at most 4 parts unreleased at a time); the server streams
 * the parts, written in place in loaned chunks, then ends the stream.
 *
 *   stream [NAMESPACE]                   both sides: the server in a forked child
 *   stream server NAMESPACE              the server alone: answers one request
 *                                        whose payload is the part count ("16")
 *   stream client NAMESPACE PARTS        the client alone
 *
 * Part i is the text "part i of N" followed by i % 251 filler bytes.
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

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* Writes part i of n into buf (at least 64 + 251 bytes); returns its length. */
static size_t make_part(char *buf, unsigned i, unsigned n) {
    int len = snprintf(buf, 64, "part %u of %u", i, n);
    memset(buf + len, 'a' + (int)(i % 26), i % 251);
    return (size_t)len + i % 251;
}

static int serve(const char *ns) {
    shmex_node *node;
    shmex_exchange *ex;
    shmex_server *server;
    CHECK(shmex_node_create("stream-server", ns, NULL, &node));
    CHECK(shmex_exchange_open_or_create(node, "files", SHMEX_PATTERN_REQUEST_RESPONSE, NULL, &ex));
    CHECK(shmex_server_create(ex, &server));
    printf("ready\n");
    fflush(stdout);

    shmex_request *request;
    shmex_request_info info;
    CHECK(shmex_server_receive(server, 10000, &request, &info, NULL));
    char count[16] = {0};
    memcpy(count, info.data, info.len < 15 ? info.len : 15);
    unsigned n = (unsigned)atoi(count);
    printf("streaming %u parts, window %u\n", n, info.stream_window);

    shmex_stream *stream;
    CHECK(shmex_request_respond_stream(request, &stream)); /* consumes the request */
    for (unsigned i = 0; i < n; i++) {
        char part[64 + 251];
        size_t len = make_part(part, i, n);
        shmex_loan *loan;
        void *data;
        CHECK(shmex_stream_loan(stream, len, &loan, &data));
        memcpy(data, part, len);
        /* Waits while the client holds a full window of unreleased parts. */
        CHECK(shmex_stream_send_loan(stream, loan, 10000));
    }
    CHECK(shmex_stream_end(stream));
    CHECK(shmex_server_free(server));
    CHECK(shmex_exchange_free(ex));
    CHECK(shmex_node_free(node));
    return 0;
}

static int fetch(const char *ns, unsigned n) {
    shmex_node *node;
    shmex_exchange *ex;
    shmex_client *client;
    CHECK(shmex_node_create("stream-client", ns, NULL, &node));
    CHECK(shmex_exchange_open_or_create(node, "files", SHMEX_PATTERN_REQUEST_RESPONSE, NULL, &ex));
    CHECK(shmex_client_create(ex, &client));

    char count[16];
    int len = snprintf(count, sizeof count, "%u", n);
    int rc;
    for (int tries = 0; (rc = shmex_client_request_stream(client, 1, count, (size_t)len, 4)) == SHMEX_E_NO_SERVER && tries < 1000; tries++)
        sleep_ms(10);
    CHECK(rc);

    size_t bytes = 0;
    for (unsigned i = 0;; i++) {
        shmex_sample *part;
        shmex_sample_info info;
        shmex_failure failure;
        rc = shmex_client_receive(client, 10000, &part, &info, &failure);
        if (rc == SHMEX_E_REQUEST_FAILED) {
            fprintf(stderr, "stream %llu failed (reason %u)\n", (unsigned long long)failure.tag, failure.reason);
            return 1;
        }
        CHECK(rc);
        if (info.kind == SHMEX_SAMPLE_STREAM_END) {
            CHECK(shmex_sample_release(part));
            if (i != n) {
                fprintf(stderr, "stream ended after %u parts, expected %u\n", i, n);
                return 1;
            }
            break;
        }
        char expected[64 + 251];
        size_t want = make_part(expected, i, n);
        if (info.kind != SHMEX_SAMPLE_STREAM_CHUNK || info.len != want || memcmp(info.data, expected, want) != 0) {
            fprintf(stderr, "part %u is wrong\n", i);
            return 1;
        }
        bytes += info.len;
        /* Releasing a part frees room in the window for the next. */
        CHECK(shmex_sample_release(part));
    }
    printf("received %u parts, %zu bytes, in order\n", n, bytes);
    CHECK(shmex_client_free(client));
    CHECK(shmex_exchange_free(ex));
    CHECK(shmex_node_free(node));
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "server") == 0)
        return serve(argv[2]);
    if (argc == 4 && strcmp(argv[1], "client") == 0)
        return fetch(argv[2], (unsigned)atoi(argv[3]));
    if (argc > 2) {
        fprintf(stderr, "usage: %s [NAMESPACE] | server NS | client NS PARTS\n", argv[0]);
        return 2;
    }
    char ns[64];
    snprintf(ns, sizeof ns, "%s", argc == 2 ? argv[1] : "");
    if (!ns[0])
        snprintf(ns, sizeof ns, "example-stream-%d", (int)getpid());

    pid_t child = fork(); /* before any shmex object */
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0)
        exit(serve(ns));
    int rc = fetch(ns, 64);
    int status;
    waitpid(child, &status, 0);
    return rc != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0;
}
