/*
 * c_loop.c - times mtr_decide in a plain C loop, the floor the Python
 * wrapper is measured against.
 *
 * Usage: c_loop TABLE_FILE REQUEST_FILE ROUNDS
 *   TABLE_FILE    a compiled table
 *   REQUEST_FILE  uint32 quadruples (principal, permission, node, channel)
 *                 in host byte order
 * Prints "ns_per_decision <float>" and "allows <count>" on stdout.
 */
#define _POSIX_C_SOURCE 199309L

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "meterd_eval.h"

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *data;
    long size;

    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        if (f != NULL) {
            fclose(f);
        }
        return NULL;
    }
    data = malloc((size_t)size + 1u);
    if (data == NULL || fread(data, 1, (size_t)size, f) != (size_t)size) {
        free(data);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *len = (size_t)size;
    return data;
}

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    size_t table_len, request_len, n, i;
    unsigned char *table_data, *request_data;
    const mtr_request *requests;
    mtr_table table;
    long rounds, r;
    unsigned long allows = 0;
    double start, elapsed;
    int status;

    if (argc != 4 || (rounds = strtol(argv[3], NULL, 10)) < 1) {
        fprintf(stderr, "usage: c_loop TABLE_FILE REQUEST_FILE ROUNDS\n");
        return 2;
    }
    table_data = read_file(argv[1], &table_len);
    request_data = read_file(argv[2], &request_len);
    if (table_data == NULL || request_data == NULL || request_len % sizeof(mtr_request) != 0) {
        fprintf(stderr, "c_loop: cannot read the input files\n");
        return 2;
    }
    status = mtr_table_open(&table, table_data, table_len);
    if (status != MTR_OK) {
        fprintf(stderr, "c_loop: table refused: %s\n", mtr_strerror(status));
        return 1;
    }
    requests = (const mtr_request *)(const void *)request_data;
    n = request_len / sizeof(mtr_request);
    start = now_ns();
    for (r = 0; r < rounds; r++) {
        for (i = 0; i < n; i++) {
            allows += mtr_decide(&table, requests[i].principal, requests[i].permission, requests[i].node,
                                 requests[i].channel) == MTR_ALLOW;
        }
    }
    elapsed = now_ns() - start;
    printf("ns_per_decision %.3f\n", n ? elapsed / ((double)n * (double)rounds) : 0.0);
    printf("allows %lu\n", allows);
    free(table_data);
    free(request_data);
    return 0;
}
