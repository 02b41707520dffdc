/* A file system that loses what was not synced, for one directory: loaded with LD_PRELOAD
 * into a process that writes a database under $KW_POWERLOSS_WATCH.
 *
 * Each fdatasync/fsync/sync_file_range of a regular file directly in that directory copies
 * the file's content, as it is once the sync returned, to $KW_POWERLOSS_SHADOW (written
 * aside and renamed in, so a copy cut short by a kill leaves the previous one). "Power loss"
 * is then the harness killing the process and putting the shadow copies in place of the
 * files: each file holds what its last sync made durable, a file never synced is absent.
 *
 * An unlink is metadata, made durable by the next journal commit (ext4's ordered mode: the
 * next sync of any file carries every metadata change before it), so the shadow copy of an
 * unlinked file is dropped at the next sync, not at the unlink.
 *
 * Every sync of a watched file appends its name to $KW_POWERLOSS_SHADOW/.syncs, so the
 * harness can see the shim is in the path of the database's syncs at all. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_PENDING 64

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char pending[MAX_PENDING][NAME_MAX + 1];
static int npending;

/* The file's name when ``path`` is directly in the watched directory, else NULL. */
static const char *watched(const char *path) {
    const char *dir = getenv("KW_POWERLOSS_WATCH");
    if (dir == NULL || path == NULL) return NULL;
    size_t n = strlen(dir);
    if (strncmp(path, dir, n) != 0 || path[n] != '/') return NULL;
    const char *name = path + n + 1;
    if (*name == '\0' || strchr(name, '/') != NULL) return NULL;
    return name;
}

static void shadow_path(char *out, size_t size, const char *name) {
    snprintf(out, size, "%s/%s", getenv("KW_POWERLOSS_SHADOW"), name);
}

static void note(const char *name) {
    char path[PATH_MAX];
    shadow_path(path, sizeof path, ".syncs");
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) return;
    char line[NAME_MAX + 2];
    int len = snprintf(line, sizeof line, "%s\n", name);
    if (write(fd, line, (size_t)len) < 0) { /* counting only */ }
    close(fd);
}

/* Copy the open file ``fd`` to the shadow directory under ``name``. */
static void copy(int fd, const char *name, off_t size) {
    char tmp[PATH_MAX], final[PATH_MAX], base[NAME_MAX + 8];
    snprintf(base, sizeof base, ".%s.tmp", name);
    shadow_path(tmp, sizeof tmp, base);
    shadow_path(final, sizeof final, name);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0) abort(); /* a simulation that cannot record must not pass as one */
    static char buffer[1 << 16];
    for (off_t at = 0; at < size;) {
        ssize_t got = pread(fd, buffer, sizeof buffer, at);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        for (ssize_t done = 0; done < got;) {
            ssize_t put = write(out, buffer + done, (size_t)(got - done));
            if (put < 0 && errno == EINTR) continue;
            if (put <= 0) abort();
            done += put;
        }
        at += got;
    }
    close(out);
    if (rename(tmp, final) != 0) abort();
}

static int is_watched_directory(const char *path) {
    const char *dir = getenv("KW_POWERLOSS_WATCH");
    return dir != NULL && strcmp(path, dir) == 0;
}

static void synced(int fd) {
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0) return;
    path[n] = '\0';
    struct stat st;
    if (fstat(fd, &st) != 0) return;
    const char *name = watched(path);
    int regular = name != NULL && S_ISREG(st.st_mode);
    if (!regular && !(S_ISDIR(st.st_mode) && is_watched_directory(path))) return;
    pthread_mutex_lock(&lock);
    /* The journal commit this sync forces makes the earlier unlinks durable. */
    for (int i = 0; i < npending; i++) {
        char gone[PATH_MAX];
        shadow_path(gone, sizeof gone, pending[i]);
        unlink(gone);
    }
    npending = 0;
    if (regular) copy(fd, name, st.st_size);
    note(regular ? name : "<directory>");
    pthread_mutex_unlock(&lock);
}

#define REAL(type, name, args) \
    static type (*real)args; \
    if (real == NULL) real = (type (*)args)dlsym(RTLD_NEXT, #name)

int fdatasync(int fd) {
    REAL(int, fdatasync, (int));
    int rc = real(fd);
    if (rc == 0) synced(fd);
    return rc;
}

int fsync(int fd) {
    REAL(int, fsync, (int));
    int rc = real(fd);
    if (rc == 0) synced(fd);
    return rc;
}

int sync_file_range(int fd, off64_t offset, off64_t nbytes, unsigned int flags) {
    REAL(int, sync_file_range, (int, off64_t, off64_t, unsigned int));
    int rc = real(fd, offset, nbytes, flags);
    /* Only a range written and waited for is durable; the whole file is copied, which
     * counts more as durable than was: SQLite does not call it, so this is never reached
     * by the database under test. */
    if (rc == 0 && (flags & SYNC_FILE_RANGE_WRITE) && (flags & SYNC_FILE_RANGE_WAIT_AFTER))
        synced(fd);
    return rc;
}

int unlink(const char *path) {
    REAL(int, unlink, (const char *));
    const char *name = watched(path);
    if (name != NULL) {
        pthread_mutex_lock(&lock);
        if (npending < MAX_PENDING) {
            snprintf(pending[npending], sizeof pending[npending], "%s", name);
            npending++;
        }
        pthread_mutex_unlock(&lock);
    }
    return real(path);
}
