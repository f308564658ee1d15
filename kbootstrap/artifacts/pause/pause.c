/* The pod sandbox process: holds the pod's namespaces, reaps orphans, exits on SIGINT/SIGTERM.
 * kbootstrap's own minimal equivalent of Kubernetes' build/pause/linux/pause.c, built statically for the
 * lab's registry.k8s.io/pause image (see kbootstrap/artifacts/images.py). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PAUSE_VERSION
#define PAUSE_VERSION "unknown"
#endif

static void on_term(int sig) {
    (void)sig;
    _exit(0);
}

static void on_child(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(int argc, char **argv) {
    if (argc == 2 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
        printf("pause.c %s (kbootstrap)\n", PAUSE_VERSION);
        return 0;
    }
    if (getpid() != 1)
        fprintf(stderr, "Warning: pause should be the first process\n");

    struct sigaction term = {0}, child = {0};
    term.sa_handler = on_term;
    child.sa_handler = on_child;
    child.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    if (sigaction(SIGINT, &term, NULL) < 0 || sigaction(SIGTERM, &term, NULL) < 0 ||
        sigaction(SIGCHLD, &child, NULL) < 0) {
        perror("sigaction");
        return 1;
    }
    for (;;)
        pause();
}
