/*
 * meterd security-log syncer (see meterd_sync.h).
 *
 * Two workers and a key thread.  A worker either seals and writes the
 * groups submitted so far, or makes what was written durable and publishes
 * it; one worker at a time does each, so one seals and writes the next
 * groups while the other's fdatasync runs, and starts their write-back, so
 * neither sealing nor moving the data holds up the next sync.  Each sync
 * covers everything written before it started.  Either worker takes either
 * job, so a group written while no sync runs is synced by the worker that
 * wrote it, without waking another thread.  The key thread stores the
 * newest durable key.
 *
 * One mutex guards the state; the threads drop it around every system call
 * that touches the disk, and a worker drops it to wake the waiters and write
 * the subscribers' eventfds after a sync (notify_unlocked: the thread it
 * wakes must not find the mutex held); mtr_syncer_unsubscribe waits for such
 * writes to end, so a removed subscriber is never written to afterwards (its
 * descriptor number may be reused at once).  The rare wakes (failure, stop)
 * are made under it.  What a woken appender reads first (the durable and
 * submitted seqs, the failure, the sync durations) is also stored atomically
 * and read without the mutex, which the worker that woke it may still hold.
 */
#define _GNU_SOURCE
#include "meterd_sync.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "meterd_seal.h"

/* One submitted group, in one allocation: the struct, then lengths, then fields. */
typedef struct group {
    struct group *next;
    uint64_t first_seq;
    uint32_t n;
    uint32_t ts_len;
    int new_segment_fd;
    int patch_last;
    uint8_t ts[64];
    uint32_t *lengths;
    uint8_t *fields;
    size_t fields_len;
} group;

struct mtr_syncer {
    pthread_mutex_t mu;
    pthread_cond_t work;  /* idle workers wait here for groups to seal or records to sync */
    pthread_cond_t flush; /* a stalled sync waits here for the fault to change */
    pthread_cond_t done;  /* waiters wait here for durability */
    pthread_cond_t keys;  /* the key thread waits here for a newer durable key */
    pthread_t workers[2];
    pthread_t key_thread;
    int segment_fd;
    int key_fd;
    int key_slot;
    group *queue_head;
    group *queue_tail;
    uint64_t submitted; /* seq of the last record submitted */
    /* The chain head after the last sealed record: only the sealing worker touches these. */
    uint8_t chain_prev[MTR_SYNC_DIGEST_BYTES];
    uint8_t chain_key[MTR_SYNC_KEY_BYTES];
    uint8_t *out;
    size_t out_cap;
    uint64_t written;                        /* seq of the last record written to segment_fd */
    uint8_t written_key[MTR_SYNC_KEY_BYTES]; /* seals written + 1 */
    int sealing;                             /* a worker is sealing and writing */
    int flushing;                            /* a worker is syncing segment_fd */
    int rotating;                            /* a worker waits on done for flushing to end */
    int workers_running;
    uint64_t durable;
    uint8_t durable_key[MTR_SYNC_KEY_BYTES]; /* seals durable + 1 */
    uint64_t key_stored;                     /* seq_next of the key last stored */
    uint64_t syncs_started;                  /* segment syncs begun (numbered from 1) */
    uint64_t syncs_done;                     /* number of the last segment sync that succeeded */
    int segment_done;                        /* every worker has ended */
    int fault;                               /* MTR_SYNC_FAULT_*, and its value (test builds only) */
    int64_t fault_value;
    int failure;
    int stopping;
    int stopped;
    int waiters; /* threads inside mtr_syncer_wait/switch_segment */
    int subscribers[MTR_SYNC_MAX_SUBSCRIBERS];
    int n_subscribers;
    int notifying;           /* workers writing subscribers' eventfds outside the mutex */
    pthread_cond_t notified; /* mtr_syncer_unsubscribe waits here until notifying is 0 */
    double latencies[MTR_SYNC_LATENCIES];
    uint64_t n_latencies;   /* syncs timed so far: latencies[n % MTR_SYNC_LATENCIES] is the next */
    uint64_t latencies_read; /* n_latencies as of the last mtr_syncer_latencies */
};

static void erase(void *p, size_t n) { explicit_bzero(p, n); }

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Caller holds mu. */
static void notify_locked(mtr_syncer *s);

/* Caller holds mu: record the first failure and tell every waiter. */
static void fail_locked(mtr_syncer *s, int err) {
    if (!s->failure) {
        __atomic_store_n(&s->failure, err, __ATOMIC_RELEASE);
    }
    pthread_cond_broadcast(&s->done);
    pthread_cond_signal(&s->keys);
    notify_locked(s);
}

static void notify_locked(mtr_syncer *s) {
    static const uint64_t one = 1;
    for (int i = 0; i < s->n_subscribers; i++) {
        /* EAGAIN (counter saturated) still leaves the eventfd readable: nothing is lost. */
        ssize_t ignored = write(s->subscribers[i], &one, sizeof one);
        (void)ignored;
    }
}

/*
 * Caller holds mu: wake every waiter and subscriber, then the key thread,
 * with the mutex released.
 * An event loop woken by its eventfd reads the durable seq and submits its
 * next group at once, and a blocked appender woken on done must take the
 * mutex again: had the worker still held it (and been preempted by the
 * thread it woke), that thread would block on it and the CPU would change
 * hands twice more per acknowledgement.  Waking waiters after the unlock
 * loses none: each checks durable under the mutex before it waits.
 * mtr_syncer_unsubscribe waits until no worker is in here, so a descriptor
 * is never written after it returns.
 */
static void notify_unlocked(mtr_syncer *s) {
    static const uint64_t one = 1;
    int fds[MTR_SYNC_MAX_SUBSCRIBERS];
    int n = s->n_subscribers;
    memcpy(fds, s->subscribers, (size_t)n * sizeof fds[0]);
    s->notifying++;
    pthread_mutex_unlock(&s->mu);
    pthread_cond_broadcast(&s->done);
    for (int i = 0; i < n; i++) {
        ssize_t ignored = write(fds[i], &one, sizeof one); /* EAGAIN: still readable */
        (void)ignored;
    }
    /* The appenders first: the key thread's store is off their path. */
    pthread_cond_signal(&s->keys);
    pthread_mutex_lock(&s->mu);
    if (--s->notifying == 0) {
        pthread_cond_broadcast(&s->notified);
    }
}

void mtr_key_pack(uint8_t *slot, uint64_t seq_next, const uint8_t *key) {
    memset(slot, 0, MTR_SYNC_KEY_SLOT);
    memcpy(slot, "MSK1", 4);
    for (int i = 0; i < 8; i++) {
        slot[4 + i] = (uint8_t)(seq_next >> (56 - 8 * i));
    }
    memcpy(slot + 12, key, MTR_SYNC_KEY_BYTES);
    uint32_t crc = mtr_crc32(slot, 12 + MTR_SYNC_KEY_BYTES);
    for (int i = 0; i < 4; i++) {
        slot[44 + i] = (uint8_t)(crc >> (24 - 8 * i));
    }
}

int mtr_key_unpack(const uint8_t *slot, uint64_t *seq_next, uint8_t *key) {
    uint32_t crc = 0;
    for (int i = 0; i < 4; i++) {
        crc = crc << 8 | slot[44 + i];
    }
    if (memcmp(slot, "MSK1", 4) != 0 || crc != mtr_crc32(slot, 12 + MTR_SYNC_KEY_BYTES)) {
        return -1;
    }
    uint64_t seq = 0;
    for (int i = 0; i < 8; i++) {
        seq = seq << 8 | slot[4 + i];
    }
    *seq_next = seq;
    memcpy(key, slot + 12, MTR_SYNC_KEY_BYTES);
    return 0;
}

/*
 * Write all of data at offset, or appended if offset < 0.  tear_us > 0:
 * write in halves with a pause between (an injected fault).
 */
static int write_all(int fd, const uint8_t *data, size_t len, off_t offset, int64_t tear_us) {
    while (len > 0) {
        size_t step = tear_us > 0 && len >= 2 ? len / 2 : len;
        ssize_t n = offset < 0 ? write(fd, data, step) : pwrite(fd, data, step, offset);
        if (step != len) {
            usleep((useconds_t)tear_us);
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno;
        }
        data += n;
        len -= (size_t)n;
        if (offset >= 0) {
            offset += n;
        }
    }
    return 0;
}

/*
 * Write the key of seq_next into the free slot and wait for the write to
 * reach the device (sync_file_range: the data only, no cache flush).  The
 * slot is durable once a device cache flush follows: the next segment
 * fdatasync that begins after this returns, or the key thread's own
 * fdatasync (see keep_keys).  The file is never resized, so the write needs
 * no metadata.
 */
static int write_key(mtr_syncer *s, uint64_t seq_next, const uint8_t *key) {
    uint8_t slot[MTR_SYNC_KEY_SLOT];
    off_t at = (off_t)(1 - s->key_slot) * MTR_SYNC_KEY_SLOT;
    mtr_key_pack(slot, seq_next, key);
    int err = write_all(s->key_fd, slot, sizeof slot, at, 0);
    erase(slot, sizeof slot);
    if (err == 0 &&
        sync_file_range(s->key_fd, at, MTR_SYNC_KEY_SLOT,
                        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER) != 0) {
        err = errno;
    }
    return err;
}

/* The fresh slot is durable: the older key goes (its erasure reaches the disk with the next key). */
static int retire_key(mtr_syncer *s) {
    static const uint8_t zero[MTR_SYNC_KEY_SLOT];
    int err = write_all(s->key_fd, zero, sizeof zero, (off_t)s->key_slot * MTR_SYNC_KEY_SLOT, 0);
    if (err == 0) {
        s->key_slot = 1 - s->key_slot;
    }
    return err;
}

static void free_groups(group *g) {
    while (g != NULL) {
        group *next = g->next;
        if (g->new_segment_fd >= 0) {
            close(g->new_segment_fd);
        }
        free(g);
        g = next;
    }
}

/* fdatasync (in a test build, through whatever fault a test injected). */
static int sync_segment(mtr_syncer *s, int fd) {
#ifdef MTR_SYNC_FAULTS
    pthread_mutex_lock(&s->mu);
    while (s->fault == MTR_SYNC_FAULT_STALL && !s->stopping) {
        pthread_cond_wait(&s->flush, &s->mu);
    }
    int fault = s->fault;
    int64_t value = s->fault_value;
    pthread_mutex_unlock(&s->mu);
    if (fault == MTR_SYNC_FAULT_FAIL) {
        return (int)value;
    }
    if (fault == MTR_SYNC_FAULT_DELAY) {
        usleep((useconds_t)value);
    }
#else
    (void)s;
#endif
    return fdatasync(fd) == 0 ? 0 : errno;
}

/* Seal the groups after the chain head into s->out and write them, switching segments at rotations. */
static int seal_and_write(mtr_syncer *s, group *groups, uint64_t *last, int64_t tear_us) {
    size_t used = 0;
    for (group *g = groups; g != NULL; g = g->next) {
        if (g->new_segment_fd >= 0) {
            /*
             * The store submits a rotation only once everything before it is
             * durable (SegmentStore._rotate: recovery reads only the head
             * segment's tail), so nothing of the old segment is left here.
             * The other worker may still be in its sync of the old segment:
             * it is closed once it is not.
             */
            pthread_mutex_lock(&s->mu);
            s->rotating = 1;
            while (s->flushing) {
                pthread_cond_wait(&s->done, &s->mu); /* run_worker wakes it when flushing ends */
            }
            s->rotating = 0;
            if (used != 0 || s->durable != g->first_seq - 1) {
                pthread_mutex_unlock(&s->mu);
                return MTR_SYNC_E_SEAL;
            }
            int old = s->segment_fd;
            s->segment_fd = g->new_segment_fd;
            pthread_mutex_unlock(&s->mu);
            close(old);
            g->new_segment_fd = -1;
        }
        size_t need = used + g->fields_len + (size_t)g->n * (g->ts_len + MTR_SEAL_FRAME_OVERHEAD);
        if (need > s->out_cap) {
            size_t cap = need * 2;
            uint8_t *out = realloc(s->out, cap);
            if (out == NULL) {
                return ENOMEM;
            }
            s->out = out;
            s->out_cap = cap;
        }
        int64_t n = mtr_seal(g->fields, g->lengths, g->n, g->first_seq - 1, g->ts, g->ts_len, s->chain_prev,
                             s->chain_key, s->out + used, s->out_cap - used, g->patch_last);
        if (n < 0) {
            return MTR_SYNC_E_SEAL;
        }
        used += (size_t)n;
        *last = g->first_seq + g->n - 1;
    }
    return write_all(s->segment_fd, s->out, used, -1, tear_us);
}

/* Caller holds mu and has set s->sealing: seal and write every queued group. */
static int seal_queued_locked(mtr_syncer *s) {
    group *groups = s->queue_head;
    s->queue_head = s->queue_tail = NULL;
#ifdef MTR_SYNC_FAULTS
    int64_t tear_us = s->fault == MTR_SYNC_FAULT_TEAR ? s->fault_value : 0;
#else
    int64_t tear_us = 0;
#endif
    pthread_mutex_unlock(&s->mu);

    uint64_t last = 0;
    int err = seal_and_write(s, groups, &last, tear_us);
    free_groups(groups);

    pthread_mutex_lock(&s->mu);
    if (err != 0) {
        return err;
    }
    s->written = last;
    memcpy(s->written_key, s->chain_key, sizeof s->chain_key);
    if (s->flushing) {
        /*
         * The other worker is busy with the previous sync: start this
         * write's write-back now, so that the next fdatasync finds the data
         * on its way and has little left but the journal commit.  Only a
         * hint: durability still comes from that fdatasync alone, which also
         * reports any write-back error.  segment_fd changes only while
         * sealing, which this worker still is.
         */
        int fd = s->segment_fd;
        pthread_mutex_unlock(&s->mu);
        (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
        pthread_mutex_lock(&s->mu);
    }
    return 0;
}

/* Caller holds mu and has set s->flushing: sync what was written, publish it, wake; hand the key on. */
static int sync_written_locked(mtr_syncer *s) {
    uint8_t key[MTR_SYNC_KEY_BYTES];
    uint64_t target = s->written;
    memcpy(key, s->written_key, sizeof key);
    int fd = s->segment_fd;
    uint64_t number = ++s->syncs_started;
    pthread_mutex_unlock(&s->mu);

    double started = now_seconds();
    int err = sync_segment(s, fd);
    double took = now_seconds() - started;

    pthread_mutex_lock(&s->mu);
    if (err == 0) {
        /* Read without the mutex too (mtr_syncer_durable, mtr_syncer_latencies): atomic, published last. */
        __atomic_store_n(&s->durable, target, __ATOMIC_RELEASE);
        s->syncs_done = number;
        memcpy(s->durable_key, key, sizeof key);
        __atomic_store(&s->latencies[s->n_latencies % MTR_SYNC_LATENCIES], &took, __ATOMIC_RELAXED);
        __atomic_store_n(&s->n_latencies, s->n_latencies + 1, __ATOMIC_RELEASE);
        notify_unlocked(s);
    }
    erase(key, sizeof key);
    return err;
}

/*
 * A worker: seal and write what is queued, or sync what is written,
 * whichever no other worker is doing; sealing first, since a sync covers
 * more the later it starts.  Workers end once stopping finds nothing left
 * to do, or at the first failure.
 */
static void *run_worker(void *arg) {
    mtr_syncer *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->failure) {
        int err;
        if (s->queue_head != NULL && !s->sealing) {
            s->sealing = 1;
            err = seal_queued_locked(s);
            s->sealing = 0;
        } else if (s->written != s->durable && !s->flushing) {
            s->flushing = 1;
            err = sync_written_locked(s);
            s->flushing = 0;
            if (s->rotating) {
                /*
                 * The sync's own wake (notify_unlocked) came before flushing
                 * ended, with the mutex free: a rotation woken by it may
                 * have found flushing still set and waited again.
                 */
                pthread_cond_broadcast(&s->done);
            }
        } else if (s->stopping && s->queue_head == NULL && !s->sealing && !s->flushing) {
            break; /* everything submitted is written and durable */
        } else {
            pthread_cond_wait(&s->work, &s->mu);
            continue;
        }
        if (err != 0) {
            fail_locked(s, err);
            break;
        }
        /* This worker takes one of the jobs next; the other worker the other, if both wait. */
        if (s->queue_head != NULL && !s->sealing && s->written != s->durable && !s->flushing) {
            pthread_cond_signal(&s->work);
        }
    }
    if (--s->workers_running == 0) {
        free_groups(s->queue_head);
        s->queue_head = s->queue_tail = NULL;
        erase(s->chain_key, sizeof s->chain_key);
        erase(s->written_key, sizeof s->written_key);
        s->segment_done = 1;
        pthread_cond_broadcast(&s->done);
        pthread_cond_signal(&s->keys);
    }
    pthread_cond_broadcast(&s->work); /* the other worker ends too */
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* The CLOCK_MONOTONIC time ns nanoseconds from now (every condition variable here uses that clock). */
static struct timespec after_ns(int64_t ns) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    ns += t.tv_nsec;
    t.tv_sec += ns / 1000000000;
    t.tv_nsec = ns % 1000000000;
    return t;
}

/*
 * How long the key thread waits for a segment sync to begin and make its
 * key durable before it syncs the key file itself (the log went idle).
 */
#define KEY_GRACE_NS 1000000

/*
 * The key thread: stores the newest durable key, off the appenders' path.
 *
 * One device cache flush per acknowledgement.  The key of durable + 1 is
 * written to the free slot and sent to the device (write_key) only after the
 * records before it are durable, so the key on disk is never ahead of the
 * log.  The slot becomes durable with the next device cache flush; the
 * segment fdatasync that acknowledges the next group issues one (a grown
 * file needs a journal commit, which flushes the cache), and a flush makes
 * every write the device completed before it durable.  So the key waits for
 * the next segment sync that begins after its write completed (numbered by
 * syncs_started/syncs_done), or, if none begins within KEY_GRACE_NS, syncs
 * itself.  Only then is the older slot erased, so a crash always leaves one
 * valid key that is at most one group behind the log (reopening evolves it
 * forward).  Keys that became durable meanwhile are skipped: only the newest
 * matters.  Until the erasure the file holds the previous key as well, as
 * it did while a separate key fdatasync ran: the window is one sync either way.
 */
static void *keep_keys(void *arg) {
    mtr_syncer *s = arg;
    uint8_t key[MTR_SYNC_KEY_BYTES];
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (s->key_stored == s->durable + 1 && !s->segment_done && !s->failure) {
            pthread_cond_wait(&s->keys, &s->mu);
        }
        if (s->failure || s->key_stored == s->durable + 1) {
            break; /* failed, or the workers ended and the newest key is stored */
        }
        uint64_t seq_next = s->durable + 1;
        memcpy(key, s->durable_key, sizeof key);
        pthread_mutex_unlock(&s->mu);

        int err = write_key(s, seq_next, key);
        erase(key, sizeof key);

        pthread_mutex_lock(&s->mu);
        /* Segment syncs numbered above this one begin after the key reached the device. */
        uint64_t sent = s->syncs_started;
        struct timespec deadline = after_ns(KEY_GRACE_NS);
        while (err == 0 && s->syncs_done <= sent && !s->failure && !s->segment_done) {
            if (s->syncs_started > sent) {
                pthread_cond_wait(&s->keys, &s->mu); /* a covering sync runs: its end signals */
            } else if (pthread_cond_timedwait(&s->keys, &s->mu, &deadline) == ETIMEDOUT && s->syncs_started == sent) {
                break;
            }
        }
        if (err == 0 && s->failure) {
            break;
        }
        if (err == 0 && s->syncs_done <= sent) {
            pthread_mutex_unlock(&s->mu);
            err = fdatasync(s->key_fd) == 0 ? 0 : errno;
            pthread_mutex_lock(&s->mu);
        }
        if (err == 0) {
            pthread_mutex_unlock(&s->mu);
            err = retire_key(s);
            pthread_mutex_lock(&s->mu);
        }
        if (err != 0) {
            fail_locked(s, err);
            pthread_cond_broadcast(&s->work); /* the workers stop */
            break;
        }
        s->key_stored = seq_next;
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

mtr_syncer *mtr_syncer_start(int segment_fd, int key_fd, int key_slot, uint64_t durable, const uint8_t *prev,
                             const uint8_t *key) {
    if (segment_fd < 0 || key_fd < 0 || (key_slot != 0 && key_slot != 1) || prev == NULL || key == NULL) {
        return NULL;
    }
    mtr_syncer *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return NULL;
    }
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->flush, NULL);
    pthread_cond_init(&s->done, &attr);
    pthread_cond_init(&s->keys, &attr);
    pthread_cond_init(&s->notified, NULL);
    pthread_condattr_destroy(&attr);
    s->segment_fd = segment_fd;
    s->key_fd = key_fd;
    s->key_slot = key_slot;
    s->submitted = s->written = s->durable = durable;
    memcpy(s->chain_prev, prev, sizeof s->chain_prev);
    memcpy(s->chain_key, key, sizeof s->chain_key);
    /* The key on disk may lag the log (reopening caught it up in memory): it is stored with the first sync. */
    s->key_stored = durable + 1;
    /* The key thread ends once the workers have: a failed start stops those started and joins. */
    pthread_t *threads[] = {&s->workers[0], &s->workers[1], &s->key_thread};
    void *(*bodies[])(void *) = {run_worker, run_worker, keep_keys};
    s->workers_running = 2;
    int started = 0;
    while (started < 3 && pthread_create(threads[started], NULL, bodies[started], s) == 0) {
        started++;
    }
    if (started == 3) {
        return s;
    }
    pthread_mutex_lock(&s->mu);
    if (started < 2) {
        s->workers_running = started; /* the last one running ends the key thread's wait */
    }
    s->stopping = 1;
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < started; i++) {
        pthread_join(*threads[i], NULL);
    }
    erase(s->chain_key, sizeof s->chain_key);
    pthread_cond_destroy(&s->keys);
    pthread_cond_destroy(&s->notified);
    pthread_cond_destroy(&s->done);
    pthread_cond_destroy(&s->flush);
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->mu);
    free(s);
    return NULL;
}

int mtr_syncer_submit(mtr_syncer *s, const uint8_t *records, uint64_t records_len, uint32_t n,
                      const uint8_t *ts, uint32_t ts_len, int new_segment_fd, int patch_last) {
    if (n == 0 || records == NULL || records_len + 1 < n || ts == NULL || ts_len == 0 ||
        ts_len > sizeof(((group *)0)->ts)) {
        return MTR_SYNC_E_ARGUMENT;
    }
    size_t fields_len = (size_t)records_len - (n - 1); /* without the separators */
    group *g = malloc(sizeof *g + (size_t)n * sizeof *g->lengths + fields_len);
    if (g == NULL) {
        return MTR_SYNC_E_SYSTEM;
    }
    g->lengths = (uint32_t *)(g + 1);
    g->fields = (uint8_t *)(g->lengths + n);
    /* Split at the newlines: exactly n pieces, or the caller's count is wrong. */
    const uint8_t *at = records;
    const uint8_t *end = records + (size_t)records_len;
    uint8_t *to = g->fields;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *nl = memchr(at, '\n', (size_t)(end - at));
        const uint8_t *stop = nl != NULL ? nl : end;
        if ((nl == NULL) != (i == n - 1) || (size_t)(stop - at) > UINT32_MAX) {
            free(g);
            return MTR_SYNC_E_ARGUMENT;
        }
        g->lengths[i] = (uint32_t)(stop - at);
        memcpy(to, at, g->lengths[i]);
        to += g->lengths[i];
        at = stop + 1;
    }
    g->next = NULL;
    g->n = n;
    g->ts_len = ts_len;
    memcpy(g->ts, ts, ts_len);
    g->new_segment_fd = -1;
    g->patch_last = patch_last;
    g->fields_len = fields_len;

    int rc = 0;
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        rc = MTR_SYNC_E_CLOSED;
    } else if (s->failure) {
        rc = s->failure;
    } else {
        g->first_seq = s->submitted + 1; /* the syncer numbers the records: the one owner of seq */
        g->new_segment_fd = new_segment_fd; /* the syncer's from here on */
        if (s->queue_tail != NULL) {
            s->queue_tail->next = g;
        } else {
            s->queue_head = g;
        }
        s->queue_tail = g;
        __atomic_store_n(&s->submitted, s->submitted + n, __ATOMIC_RELEASE);
        g = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    if (g == NULL) {
        /*
         * Signalled after unlocking: a worker woken while the mutex is held
         * would block on it at once and make the appender's thread hand the
         * CPU over twice.  A worker checks the queue under the mutex before it
         * waits, so the group cannot be missed.
         */
        pthread_cond_signal(&s->work);
    }
    free(g);
    return rc;
}

/* Caller holds mu and counts in s->waiters. */
static int wait_locked(mtr_syncer *s, uint64_t seq, int64_t timeout_ns) {
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    int64_t ns = deadline.tv_nsec + (timeout_ns < 0 ? 0 : timeout_ns % 1000000000);
    deadline.tv_sec += (timeout_ns < 0 ? 0 : timeout_ns / 1000000000) + ns / 1000000000;
    deadline.tv_nsec = ns % 1000000000;
    for (;;) {
        if (s->durable >= seq) {
            return 0;
        }
        if (s->failure) {
            return s->failure;
        }
        if (s->stopped) {
            return MTR_SYNC_E_CLOSED;
        }
        if (pthread_cond_timedwait(&s->done, &s->mu, &deadline) == ETIMEDOUT) {
            return s->durable >= seq ? 0 : (s->failure ? s->failure : MTR_SYNC_E_TIMEOUT);
        }
    }
}

int mtr_syncer_wait(mtr_syncer *s, uint64_t seq, int64_t timeout_ns) {
    if (mtr_syncer_durable(s) >= seq) {
        return 0; /* already: no need to take the mutex */
    }
    pthread_mutex_lock(&s->mu);
    s->waiters++;
    int rc = wait_locked(s, seq, timeout_ns);
    if (--s->waiters == 0) {
        pthread_cond_broadcast(&s->done);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/*
 * These three read without the mutex: an event loop woken by a sync calls
 * them at once, while the worker that woke it may still hold the mutex, and
 * blocking on it would cost the loop another sleep and wake-up.  Each value
 * is stored atomically under the mutex; a reader gets the latest or one
 * just before it, as it could with the mutex.
 */
uint64_t mtr_syncer_submitted(mtr_syncer *s) { return __atomic_load_n(&s->submitted, __ATOMIC_ACQUIRE); }

uint64_t mtr_syncer_durable(mtr_syncer *s) { return __atomic_load_n(&s->durable, __ATOMIC_ACQUIRE); }

int mtr_syncer_failure(mtr_syncer *s) { return __atomic_load_n(&s->failure, __ATOMIC_ACQUIRE); }

int mtr_syncer_subscribe(mtr_syncer *s, int fd) {
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    if (fd < 0 || s->n_subscribers == MTR_SYNC_MAX_SUBSCRIBERS) {
        rc = MTR_SYNC_E_ARGUMENT;
    } else {
        s->subscribers[s->n_subscribers++] = fd;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void mtr_syncer_unsubscribe(mtr_syncer *s, int fd) {
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n_subscribers; i++) {
        if (s->subscribers[i] == fd) {
            s->subscribers[i] = s->subscribers[--s->n_subscribers];
            break;
        }
    }
    while (s->notifying > 0) {
        pthread_cond_wait(&s->notified, &s->mu); /* a worker may still hold fd's number */
    }
    pthread_mutex_unlock(&s->mu);
}

void mtr_syncer_notify(mtr_syncer *s) {
    pthread_mutex_lock(&s->mu);
    notify_locked(s);
    pthread_mutex_unlock(&s->mu);
}

/*
 * Without the mutex, for the same reason as mtr_syncer_durable; callers are
 * serialised (Syncer.latencies).  A duration is published by n_latencies
 * after it is stored; a slot is overwritten only MTR_SYNC_LATENCIES syncs
 * later, far longer than this copy takes.
 */
uint32_t mtr_syncer_latencies(mtr_syncer *s, double *out, uint32_t cap) {
    uint64_t end = __atomic_load_n(&s->n_latencies, __ATOMIC_ACQUIRE);
    uint64_t n = end - s->latencies_read;
    n = n < MTR_SYNC_LATENCIES ? n : MTR_SYNC_LATENCIES;
    n = n < cap ? n : cap;
    /* The newest n, oldest first. */
    for (uint64_t i = 0; i < n; i++) {
        __atomic_load(&s->latencies[(end - n + i) % MTR_SYNC_LATENCIES], &out[i], __ATOMIC_RELAXED);
    }
    s->latencies_read = end;
    return (uint32_t)n;
}

int mtr_syncer_stop(mtr_syncer *s) {
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        int rc = s->stopped ? MTR_SYNC_E_CLOSED : 0;
        pthread_mutex_unlock(&s->mu);
        return rc;
    }
    s->stopping = 1;
    pthread_cond_broadcast(&s->work);
    pthread_cond_broadcast(&s->flush); /* a stalled sync gives up */
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->workers[0], NULL);
    pthread_join(s->workers[1], NULL);
    pthread_join(s->key_thread, NULL);

    pthread_mutex_lock(&s->mu);
    /* The last key's erasure is made durable too: nothing will sync it later. */
    if (!s->failure && fdatasync(s->key_fd) != 0) {
        __atomic_store_n(&s->failure, errno, __ATOMIC_RELEASE);
    }
    s->stopped = 1;
    erase(s->chain_key, sizeof s->chain_key);
    close(s->segment_fd);
    s->segment_fd = -1;
    erase(s->durable_key, sizeof s->durable_key);
    pthread_cond_broadcast(&s->done);
    notify_locked(s);
    s->n_subscribers = 0;
    while (s->waiters > 0) {
        pthread_cond_wait(&s->done, &s->mu);
    }
    int rc = s->failure;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

#ifdef MTR_SYNC_FAULTS
void mtr_syncer_set_fault(mtr_syncer *s, int fault, int64_t value) {
    pthread_mutex_lock(&s->mu);
    s->fault = fault;
    s->fault_value = value;
    pthread_cond_broadcast(&s->flush); /* a stalled sync looks again */
    pthread_mutex_unlock(&s->mu);
}
#endif

void mtr_syncer_free(mtr_syncer *s) {
    if (s == NULL) {
        return;
    }
    mtr_syncer_stop(s);
    pthread_cond_destroy(&s->keys);
    pthread_cond_destroy(&s->notified);
    pthread_cond_destroy(&s->done);
    pthread_cond_destroy(&s->flush);
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->mu);
    free(s->out);
    erase(s, sizeof *s);
    free(s);
}
