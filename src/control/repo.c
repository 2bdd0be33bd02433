/* A model repository in Triton's layout: REPO/NAME/VERSION/model.onnx, VERSION a positive
 * integer. The controller polls it; `seifer deploy` adds a version atomically. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control/control.h"

static long parse_version(const char *s) {
  if (!s[0] || s[0] == '0' || strlen(s) > 9) return -1;
  long v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9') return -1;
    v = v * 10 + (*p - '0');
  }
  return v;
}

static int valid_name(const char *n) {
  return n[0] && n[0] != '.' && strlen(n) < 256 && !strchr(n, '/');
}

int sf__repo_scan(const char *repo, const char *name, sf_repo_version *out, int max, sf_err *err) {
  char dir[PATH_MAX];
  if (!valid_name(name))
    return sf__errf(err, SF_EINVAL, "model name '%s' is not a directory name", name);
  snprintf(dir, sizeof dir, "%s/%s", repo, name);
  DIR *d = opendir(dir);
  if (!d) return errno == ENOENT ? 0 : sf__errf(err, SF_EIO, "%s: %s", dir, strerror(errno));
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    long v = parse_version(e->d_name);
    if (v <= 0) continue;
    sf_repo_version r;
    memset(&r, 0, sizeof r);
    r.version = v;
    if (snprintf(r.path, sizeof r.path, "%s/%s/model.onnx", dir, e->d_name) >= (int)sizeof r.path)
      continue;
    struct stat st;
    if (stat(r.path, &st) < 0 || !S_ISREG(st.st_mode)) continue;
    r.size = (int64_t)st.st_size;
    r.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    /* keep the max highest versions, sorted descending */
    int pos = n;
    while (pos > 0 && out[pos - 1].version < v) pos--;
    if (pos >= max) continue;
    int last = n < max ? n : max - 1;
    memmove(&out[pos + 1], &out[pos], sizeof *out * (size_t)(last - pos));
    out[pos] = r;
    if (n < max) n++;
  }
  closedir(d);
  return n;
}

int sf__repo_only_model(const char *repo, char *name, size_t cap, sf_err *err) {
  DIR *d = opendir(repo);
  if (!d) return sf__errf(err, SF_EIO, "%s: %s", repo, strerror(errno));
  int n = 0;
  struct dirent *e;
  name[0] = 0;
  while ((e = readdir(d))) {
    if (!valid_name(e->d_name)) continue;
    char p[PATH_MAX];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", repo, e->d_name);
    if (stat(p, &st) < 0 || !S_ISDIR(st.st_mode)) continue;
    if (n++ == 0) snprintf(name, cap, "%s", e->d_name);
  }
  closedir(d);
  if (n == 1) return 0;
  return sf__errf(err, SF_EINVAL, "%s: %s; name the model with --name", repo,
                  n ? "holds several models" : "holds no model directory");
}

static int copy_file(const char *from, const char *to, sf_err *err) {
  int in = open(from, O_RDONLY | O_CLOEXEC);
  if (in < 0) return sf__errf(err, SF_EIO, "%s: %s", from, strerror(errno));
  int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (out < 0) {
    int e = errno;
    close(in);
    return sf__errf(err, SF_EIO, "%s: %s", to, strerror(e));
  }
  char buf[1 << 16];
  int rc = 0;
  for (;;) {
    ssize_t r = read(in, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      rc = sf__errf(err, SF_EIO, "%s: %s", from, strerror(errno));
      break;
    }
    if (r == 0) break;
    for (ssize_t off = 0; off < r;) {
      ssize_t w = write(out, buf + off, (size_t)(r - off));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        rc = sf__errf(err, SF_EIO, "%s: %s", to, strerror(errno));
        break;
      }
      off += w;
    }
    if (rc) break;
  }
  if (rc == 0 && fsync(out) < 0) rc = sf__errf(err, SF_EIO, "%s: %s", to, strerror(errno));
  close(in);
  if (close(out) < 0 && rc == 0) rc = sf__errf(err, SF_EIO, "%s: %s", to, strerror(errno));
  return rc;
}

int sf__repo_add(const char *repo, const char *name, long version, const char *file, sf_err *err) {
  char dir[PATH_MAX], tmp[PATH_MAX + 64], final[PATH_MAX + 32], path[PATH_MAX + 96];
  if (!valid_name(name))
    return sf__errf(err, SF_EINVAL, "model name '%s' is not a directory name", name);
  if (version <= 0 || version > 999999999)
    return sf__errf(err, SF_EINVAL, "version must be an integer in [1, 999999999]");
  snprintf(dir, sizeof dir, "%s/%s", repo, name);
  if (sf__mkdirs(dir) < 0) return sf__errf(err, SF_EIO, "%s: %s", dir, strerror(errno));
  snprintf(final, sizeof final, "%s/%ld", dir, version);
  if (access(final, F_OK) == 0)
    return sf__errf(err, SF_EINVAL, "%s: version %ld exists", dir, version);
  snprintf(tmp, sizeof tmp, "%s/.%ld.tmp.%d", dir, version, (int)getpid());
  if (mkdir(tmp, 0700) < 0) return sf__errf(err, SF_EIO, "%s: %s", tmp, strerror(errno));
  snprintf(path, sizeof path, "%s/model.onnx", tmp);
  int rc = copy_file(file, path, err);
  if (rc == 0 && rename(tmp, final) < 0)
    rc = sf__errf(err, SF_EIO, "%s: %s", final, strerror(errno));
  if (rc < 0) {
    unlink(path);
    rmdir(tmp);
  }
  return rc;
}
