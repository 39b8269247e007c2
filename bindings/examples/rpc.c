/*
 * Request-response from C: a server answers "re: <request>" to each request,
 * a client sends COUNT requests and checks each answer by its tag.
 *
 *   rpc [NAMESPACE]                      both sides: the server in a forked child
 *   rpc server NAMESPACE COUNT           the server alone (prints "ready")
 *   rpc client NAMESPACE COUNT           the client alone
 *
 * Both sides open (or create) the exchange "time" with the default limits.
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

static int serve(const char *ns, int count) {
    shmex_node *node;
    shmex_exchange *ex;
    shmex_server *server;
    CHECK(shmex_node_create("rpc-server", ns, NULL, &node));
    CHECK(shmex_exchange_open_or_create(node, "time", SHMEX_PATTERN_REQUEST_RESPONSE, NULL, &ex));
    CHECK(shmex_server_create(ex, &server));
    printf("ready\n");
    fflush(stdout);

    for (int i = 0; i < count; i++) {
        shmex_request *request;
        shmex_request_info info;
        CHECK(shmex_server_receive(server, 10000, &request, &info, NULL));
        /* Answer zero-copy: loan a chunk, write the answer in place, send it. */
        size_t len = 4 + info.len;
        shmex_loan *loan;
        void *out;
        CHECK(shmex_server_loan(server, len, &loan, &out));
        memcpy(out, "re: ", 4);
        memcpy((char *)out + 4, info.data, info.len);
        /* The request's payload stays valid until the request is answered. */
        CHECK(shmex_request_respond_loan(request, loan));
    }
    CHECK(shmex_server_free(server));
    CHECK(shmex_exchange_free(ex));
    CHECK(shmex_node_free(node));
    return 0;
}

static int call(const char *ns, int count) {
    shmex_node *node;
    shmex_exchange *ex;
    shmex_client *client;
    CHECK(shmex_node_create("rpc-client", ns, NULL, &node));
    CHECK(shmex_exchange_open_or_create(node, "time", SHMEX_PATTERN_REQUEST_RESPONSE, NULL, &ex));
    CHECK(shmex_client_create(ex, &client));

    for (int i = 0; i < count; i++) {
        char question[32];
        int n = snprintf(question, sizeof question, "what time is it? #%d", i);
        int rc;
        /* NO_SERVER until the server registered: a send says whether it was accepted. */
        for (int tries = 0; (rc = shmex_client_send(client, (uint64_t)i, question, (size_t)n)) == SHMEX_E_NO_SERVER && tries < 1000; tries++)
            sleep_ms(10);
        CHECK(rc);

        shmex_sample *answer;
        shmex_sample_info info;
        shmex_failure failure;
        rc = shmex_client_receive(client, 10000, &answer, &info, &failure);
        if (rc == SHMEX_E_REQUEST_FAILED) {
            fprintf(stderr, "request %llu failed (reason %u)\n", (unsigned long long)failure.tag, failure.reason);
            return 1;
        }
        CHECK(rc);
        char expected[40];
        int m = snprintf(expected, sizeof expected, "re: %s", question);
        if (info.tag != (uint64_t)i || info.len != (size_t)m || memcmp(info.data, expected, info.len) != 0) {
            fprintf(stderr, "wrong answer to request %d\n", i);
            return 1;
        }
        printf("%d: %.*s\n", i, (int)info.len, (const char *)info.data);
        CHECK(shmex_sample_release(answer));
    }
    CHECK(shmex_client_free(client));
    CHECK(shmex_exchange_free(ex));
    CHECK(shmex_node_free(node));
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "server") == 0)
        return serve(argv[2], atoi(argv[3]));
    if (argc == 4 && strcmp(argv[1], "client") == 0)
        return call(argv[2], atoi(argv[3]));
    if (argc > 2) {
        fprintf(stderr, "usage: %s [NAMESPACE] | server NS COUNT | client NS COUNT\n", argv[0]);
        return 2;
    }
    char ns[64];
    snprintf(ns, sizeof ns, "%s", argc == 2 ? argv[1] : "");
    if (!ns[0])
        snprintf(ns, sizeof ns, "example-rpc-%d", (int)getpid());

    /* Fork before creating any shmex object: a node runs a heartbeat thread. */
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0)
        exit(serve(ns, 3));
    int rc = call(ns, 3);
    int status;
    waitpid(child, &status, 0);
    return rc != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0;
}
