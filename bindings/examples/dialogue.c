/*
 * A dialogue (response with request) from C: the client asks for a transfer,
 * the server answers with a question ("PIN?"), the client answers it, and the
 * server ends the conversation with a plain response, all under one tag.
 *
 *   dialogue [NAMESPACE]      the server runs in a forked child
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

#define TEXT(s) s, strlen(s)

static int equals(const void *data, size_t len, const char *text) {
    return len == strlen(text) && memcmp(data, text, len) == 0;
}

static int bank(const char *ns) {
    shmex_node *node;
    shmex_exchange *ex;
    shmex_server *server;
    CHECK(shmex_node_create("bank", ns, NULL, &node));
    CHECK(shmex_exchange_open_or_create(node, "bank", SHMEX_PATTERN_REQUEST_RESPONSE, NULL, &ex));
    CHECK(shmex_server_create(ex, &server));

    shmex_request *request;
    shmex_request_info info;
    CHECK(shmex_server_receive(server, 10000, &request, &info, NULL));
    printf("bank: request %llu: %.*s\n", (unsigned long long)info.tag, (int)info.len, (const char *)info.data);
    CHECK(shmex_request_ask(request, TEXT("PIN?"))); /* a response that is a question */

    CHECK(shmex_server_receive(server, 10000, &request, &info, NULL));
    if (!info.is_answer || info.tag != 9 || !equals(info.data, info.len, "1234")) {
        fprintf(stderr, "bank: expected the answer to tag 9\n");
        return 1;
    }
    printf("bank: answer to %llu: %.*s\n", (unsigned long long)info.tag, (int)info.len, (const char *)info.data);
    CHECK(shmex_request_respond(request, TEXT("done"))); /* a plain response ends it */

    CHECK(shmex_server_free(server));
    CHECK(shmex_exchange_free(ex));
    CHECK(shmex_node_free(node));
    return 0;
}

static int customer(const char *ns) {
    shmex_node *node;
    shmex_exchange *ex;
    shmex_client *client;
    CHECK(shmex_node_create("customer", ns, NULL, &node));
    CHECK(shmex_exchange_open_or_create(node, "bank", SHMEX_PATTERN_REQUEST_RESPONSE, NULL, &ex));
    CHECK(shmex_client_create(ex, &client));

    int rc;
    for (int tries = 0; (rc = shmex_client_send(client, 9, TEXT("transfer 100"))) == SHMEX_E_NO_SERVER && tries < 1000; tries++) {
        struct timespec t = {0, 10000000L};
        nanosleep(&t, NULL);
    }
    CHECK(rc);

    shmex_sample *question;
    shmex_sample_info info;
    CHECK(shmex_client_receive(client, 10000, &question, &info, NULL));
    if (info.kind != SHMEX_SAMPLE_QUESTION || !equals(info.data, info.len, "PIN?")) {
        fprintf(stderr, "customer: expected a question\n");
        return 1;
    }
    printf("customer: question on %llu: %.*s\n", (unsigned long long)info.tag, (int)info.len, (const char *)info.data);
    CHECK(shmex_client_answer(client, question, TEXT("1234"))); /* to the server that asked */
    CHECK(shmex_sample_release(question));

    shmex_sample *result;
    CHECK(shmex_client_receive(client, 10000, &result, &info, NULL));
    if (info.kind != SHMEX_SAMPLE_MESSAGE || info.tag != 9 || !equals(info.data, info.len, "done")) {
        fprintf(stderr, "customer: expected the final response\n");
        return 1;
    }
    printf("customer: %.*s\n", (int)info.len, (const char *)info.data);
    CHECK(shmex_sample_release(result));

    CHECK(shmex_client_free(client));
    CHECK(shmex_exchange_free(ex));
    CHECK(shmex_node_free(node));
    return 0;
}

int main(int argc, char **argv) {
    char ns[64];
    snprintf(ns, sizeof ns, "%s", argc >= 2 ? argv[1] : "");
    if (!ns[0])
        snprintf(ns, sizeof ns, "example-dialogue-%d", (int)getpid());

    pid_t child = fork(); /* before any shmex object */
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0)
        exit(bank(ns));
    int rc = customer(ns);
    int status;
    waitpid(child, &status, 0);
    return rc != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0;
}
