/*
 * Waiting on several things at once, and exchange events, from C.
 *
 * A service (a forked child) creates the exchange "orders" and serves it.
 * The main process watches "orders" and waits in one wait set on the watch,
 * a client of "orders" and a subscriber of another exchange, "news":
 *   1. the watch reports the exchange up (unless it was up already);
 *   2. a request goes out; the wait set wakes for the client's response;
 *   3. the service is killed (SIGKILL, no clean-up): the wait set wakes for
 *      the watch, which reports the exchange down, and the client's
 *      receive says SHMEX_E_EXCHANGE_DOWN.
 *
 *   watch [NAMESPACE]
 */
#include "shmex.h"

#include <signal.h>
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

static int serve(const char *ns) {
    shmex_node *node;
    shmex_exchange *ex;
    shmex_server *server;
    CHECK(shmex_node_create("orders-service", ns, NULL, &node));
    CHECK(shmex_exchange_create(node, "orders", SHMEX_PATTERN_REQUEST_RESPONSE, NULL, &ex));
    CHECK(shmex_server_create(ex, &server));
    for (;;) { /* until killed */
        shmex_request *request;
        int rc = shmex_server_receive(server, SHMEX_FOREVER, &request, NULL, NULL);
        if (rc == SHMEX_OK)
            CHECK(shmex_request_respond(request, "accepted", 8));
    }
}

/* Waits on the set; returns whether member `which` is among the ready ones. */
static int wait_for(shmex_waitset *set, size_t which) {
    size_t ready[4], n;
    CHECK(shmex_waitset_wait(set, 10000, ready, 4, &n));
    for (size_t i = 0; i < n; i++)
        if (ready[i] == which)
            return 1;
    return 0;
}

int main(int argc, char **argv) {
    char ns[64];
    snprintf(ns, sizeof ns, "%s", argc >= 2 ? argv[1] : "");
    if (!ns[0])
        snprintf(ns, sizeof ns, "example-watch-%d", (int)getpid());

    pid_t child = fork(); /* before any shmex object */
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0)
        exit(serve(ns));

    shmex_node *node;
    shmex_watch *watch;
    shmex_exchange *news;
    shmex_subscriber *headlines;
    shmex_waitset *set;
    size_t w, c, s;
    int event, up;
    CHECK(shmex_node_create("front-desk", ns, NULL, &node));
    CHECK(shmex_watch_create(node, "orders", &watch));
    CHECK(shmex_exchange_create(node, "news", SHMEX_PATTERN_PUBLISH_SUBSCRIBE, NULL, &news));
    CHECK(shmex_subscriber_create(news, "#", 1, &headlines));
    CHECK(shmex_waitset_create(&set));
    CHECK(shmex_waitset_add(set, watch, &w));
    CHECK(shmex_waitset_add(set, headlines, &s));

    /* 1. Wait until the service's exchange is up. */
    CHECK(shmex_watch_is_up(watch, &up));
    while (!up) {
        if (wait_for(set, w)) {
            CHECK(shmex_watch_try_event(watch, &event));
            up = event == SHMEX_EVENT_UP;
        }
    }
    printf("orders is up\n");

    /* 2. A request, and its response through the wait set, which the client
     * joins. */
    shmex_exchange *orders;
    shmex_client *client;
    CHECK(shmex_exchange_open(node, "orders", &orders));
    CHECK(shmex_client_create(orders, &client));
    CHECK(shmex_waitset_add(set, client, &c));
    int rc;
    while ((rc = shmex_client_send(client, 1, "2 coffees", 9)) == SHMEX_E_NO_SERVER) {
        struct timespec t = {0, 10000000L};
        nanosleep(&t, NULL);
    }
    CHECK(rc);
    shmex_sample *response = NULL;
    while (response == NULL) {
        if (wait_for(set, c))
            CHECK(shmex_client_try_receive(client, &response, NULL, NULL));
    }
    shmex_sample_info info;
    CHECK(shmex_sample_get_info(response, &info));
    printf("order %llu: %.*s\n", (unsigned long long)info.tag, (int)info.len, (const char *)info.data);
    CHECK(shmex_sample_release(response));

    /* 3. The service dies; the watch tells. */
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    event = SHMEX_EVENT_NONE;
    while (event != SHMEX_EVENT_DOWN) {
        if (wait_for(set, w))
            CHECK(shmex_watch_try_event(watch, &event));
    }
    printf("orders went down\n");
    rc = shmex_client_send(client, 2, "1 tea", 5);
    printf("a new request: %s\n", shmex_error_string(rc));

    CHECK(shmex_waitset_free(set)); /* before its members */
    CHECK(shmex_client_free(client));
    CHECK(shmex_exchange_free(orders));
    CHECK(shmex_subscriber_free(headlines));
    CHECK(shmex_exchange_free(news));
    CHECK(shmex_watch_free(watch));
    CHECK(shmex_node_free(node));
    return rc == SHMEX_E_EXCHANGE_DOWN ? 0 : 1;
}
