/* Kubernetes API client: configuration, requests, informers (list + watch), leader election. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "control/k8s.h"
#include "serve/serve.h"

#define MAX_RESPONSE ((size_t)64 << 20)   /* a list or an object */
#define MAX_WATCH_LINE ((size_t)16 << 20) /* one watch event */
#define MAX_KUBECONFIG (4 << 20)
#define TOKEN_REFRESH_S 60.0

const sf_k8s_kind sf__k8s_nodes = {"/api/v1", "nodes", "Node", 0};
const sf_k8s_kind sf__k8s_secrets = {"/api/v1", "secrets", "Secret", 1};
const sf_k8s_kind sf__k8s_deployments = {"/apis/apps/v1", "deployments", "Deployment", 1};
const sf_k8s_kind sf__k8s_leases = {"/apis/coordination.k8s.io/v1", "leases", "Lease", 1};
const sf_k8s_kind sf__k8s_seifermodels = {"/apis/" SF_K8S_API_VERSION, "seifermodels",
                                          "SeiferModel", 1};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
}

static double wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static char *trim(char *s) {
  while (*s && isspace((unsigned char)*s)) s++;
  size_t n = strlen(s);
  while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
  return s;
}

/* ---- YAML (the kubeconfig subset) -------------------------------------------------------------
 */
typedef struct yline {
  int indent, no;
  char *text;
} yline;
typedef struct yparse {
  yline *l;
  int n, i;
  sf_err *err;
  int failed;
} yparse;

static int y_seq(const char *t) {
  return t[0] == '-' && (t[1] == 0 || t[1] == ' ');
}

/* position of the ':' that ends a key, or NULL */
static char *y_colon(char *t) {
  char q = 0;
  for (char *p = t; *p; p++) {
    if (q) {
      if (*p == q && !(q == '"' && p[-1] == '\\')) q = 0;
      continue;
    }
    if ((*p == '"' || *p == '\'') && p == t)
      q = *p;
    else if (*p == ':' && (p[1] == 0 || p[1] == ' '))
      return p;
  }
  return NULL;
}

static cJSON *y_scalar(yparse *y, char *t, int no) {
  t = trim(t);
  if (t[0] == '"' || t[0] == '\'') {
    char q = t[0];
    size_t n = strlen(t);
    if (n < 2 || t[n - 1] != q) {
      sf__errf(y->err, SF_EFORMAT, "line %d: unterminated quoted string", no);
      y->failed = 1;
      return NULL;
    }
    char *o = t;
    for (size_t i = 1; i + 1 < n; i++) {
      if (q == '\'' && t[i] == '\'' && t[i + 1] == '\'') {
        *o++ = '\'';
        i++;
      } else if (q == '"' && t[i] == '\\' && i + 2 < n) {
        char c = t[++i];
        *o++ = c == 'n' ? '\n' : c == 't' ? '\t' : c;
      } else
        *o++ = t[i];
    }
    *o = 0;
    return cJSON_CreateString(t);
  }
  if (!strcmp(t, "[]")) return cJSON_CreateArray();
  if (!strcmp(t, "{}")) return cJSON_CreateObject();
  if (t[0] == '[' || t[0] == '{' || t[0] == '&' || t[0] == '*' || t[0] == '!') {
    sf__errf(y->err, SF_EUNSUPPORTED,
             "line %d: flow collections, anchors and tags are not supported", no);
    y->failed = 1;
    return NULL;
  }
  if (!strcmp(t, "null") || !strcmp(t, "~")) return cJSON_CreateNull();
  return cJSON_CreateString(t);
}

static cJSON *y_block(yparse *y, int ind);

static cJSON *y_map(yparse *y, int ind) {
  cJSON *o = cJSON_CreateObject();
  while (!y->failed && y->i < y->n && y->l[y->i].indent == ind && !y_seq(y->l[y->i].text)) {
    yline *L = &y->l[y->i];
    char *c = y_colon(L->text);
    if (!c) {
      sf__errf(y->err, SF_EFORMAT, "line %d: expected 'key: value'", L->no);
      y->failed = 1;
      break;
    }
    *c = 0;
    cJSON *kk = y_scalar(y, L->text, L->no);
    if (!kk) break;
    char key[512];
    snprintf(key, sizeof key, "%s", cJSON_IsString(kk) ? kk->valuestring : "");
    cJSON_Delete(kk);
    char *val = trim(c + 1);
    y->i++;
    cJSON *v = NULL;
    if (!*val) {
      if (y->i < y->n && y->l[y->i].indent > ind)
        v = y_block(y, y->l[y->i].indent);
      else if (y->i < y->n && y->l[y->i].indent == ind && y_seq(y->l[y->i].text))
        v = y_block(y, ind);
      else
        v = cJSON_CreateNull();
    } else if (val[0] == '|' || val[0] == '>') {
      size_t cap = 1, len = 0;
      char *buf = calloc(1, 1);
      while (buf && y->i < y->n && y->l[y->i].indent > ind) {
        const char *t = y->l[y->i].text;
        size_t tn = strlen(t);
        char *nb = realloc(buf, cap + tn + 2);
        if (!nb) break;
        buf = nb;
        cap += tn + 2;
        if (len) buf[len++] = val[0] == '|' ? '\n' : ' ';
        memcpy(buf + len, t, tn);
        len += tn;
        buf[len] = 0;
        y->i++;
      }
      v = buf ? cJSON_CreateString(buf) : NULL;
      free(buf);
    } else {
      v = y_scalar(y, val, L->no);
    }
    if (!v) break;
    if (cJSON_GetObjectItemCaseSensitive(o, key))
      cJSON_ReplaceItemInObjectCaseSensitive(o, key, v);
    else
      cJSON_AddItemToObject(o, key, v);
  }
  if (y->failed) {
    cJSON_Delete(o);
    return NULL;
  }
  return o;
}

static cJSON *y_seqblock(yparse *y, int ind) {
  cJSON *a = cJSON_CreateArray();
  while (!y->failed && y->i < y->n && y->l[y->i].indent == ind && y_seq(y->l[y->i].text)) {
    yline *L = &y->l[y->i];
    char *rest = L->text + 1;
    while (*rest == ' ') rest++;
    cJSON *v = NULL;
    if (!*rest) {
      y->i++;
      if (y->i < y->n && y->l[y->i].indent > ind)
        v = y_block(y, y->l[y->i].indent);
      else
        v = cJSON_CreateNull();
    } else if (y_colon(rest) ||
               y_seq(rest)) { /* "- key: value": a map (or list) starting on this line */
      L->indent = ind + (int)(rest - L->text);
      L->text = rest;
      v = y_block(y, L->indent);
    } else {
      v = y_scalar(y, rest, L->no);
      y->i++;
    }
    if (!v) break;
    cJSON_AddItemToArray(a, v);
  }
  if (y->failed) {
    cJSON_Delete(a);
    return NULL;
  }
  return a;
}

static cJSON *y_block(yparse *y, int ind) {
  return y_seq(y->l[y->i].text) ? y_seqblock(y, ind) : y_map(y, ind);
}

cJSON *sf__k8s_yaml_parse(const char *txt, size_t len, sf_err *err) {
  size_t k = 0;
  while (k < len && isspace((unsigned char)txt[k])) k++;
  if (k < len && txt[k] == '{') {
    cJSON *j = cJSON_ParseWithLength(txt, len);
    if (!j) sf__errf(err, SF_EFORMAT, "malformed JSON");
    return j;
  }
  char *buf = sf__malloc(len + 1);
  yline *lines = NULL;
  int n = 0, cap = 0;
  cJSON *out = NULL;
  if (!buf) {
    sf__errf(err, SF_ENOMEM, "out of memory");
    return NULL;
  }
  memcpy(buf, txt, len);
  buf[len] = 0;
  int no = 0;
  for (char *save = NULL, *p = strtok_r(buf, "\n", &save); p; p = strtok_r(NULL, "\n", &save)) {
    no++;
    size_t pl = strlen(p);
    if (pl && p[pl - 1] == '\r') p[--pl] = 0;
    int ind = 0;
    while (p[ind] == ' ') ind++;
    if (p[ind] == '\t') {
      sf__errf(err, SF_EFORMAT, "line %d: tabs are not allowed for indentation", no);
      goto done;
    }
    char *t = p + ind;
    char q = 0; /* strip a comment outside quotes */
    for (char *c = t; *c; c++) {
      if (q) {
        if (*c == q) q = 0;
      } else if (*c == '"' || *c == '\'') {
        if (c == t || c[-1] == ' ') q = *c;
      } else if (*c == '#' && (c == t || c[-1] == ' ')) {
        *c = 0;
        break;
      }
    }
    size_t tl = strlen(t);
    while (tl && t[tl - 1] == ' ') t[--tl] = 0;
    if (!tl || !strcmp(t, "---")) continue;
    if (!strcmp(t, "...")) break;
    if (sf__grow((void **)&lines, &cap, n + 1, sizeof *lines) < 0) {
      sf__errf(err, SF_ENOMEM, "out of memory");
      goto done;
    }
    lines[n++] = (yline){ind, no, t};
  }
  if (n == 0) {
    out = cJSON_CreateObject();
    goto done;
  }
  yparse y = {lines, n, 0, err, 0};
  out = y_block(&y, lines[0].indent);
  if (out && y.i < y.n) {
    sf__errf(err, SF_EFORMAT, "line %d: unexpected indentation", lines[y.i].no);
    cJSON_Delete(out);
    out = NULL;
  }
done:
  free(lines);
  free(buf);
  return out;
}

/* ---- configuration ----------------------------------------------------------------------------
 */
static int read_text(const char *path, char **out, sf_err *err) {
  void *d = NULL;
  size_t n = 0;
  if (sf__read_file(path, MAX_KUBECONFIG, &d, &n, err) < 0) return err ? err->code : SF_EIO;
  char *s = sf__realloc(d, n + 1);
  if (!s) {
    free(d);
    return sf__errf(err, SF_ENOMEM, "out of memory");
  }
  s[n] = 0;
  *out = s;
  return 0;
}

static char *b64_decode(const char *in, sf_err *err, const char *what) {
  size_t n = strlen(in);
  char *clean = sf__malloc(n + 4);
  if (!clean) return NULL;
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (!isspace((unsigned char)in[i])) clean[m++] = in[i];
  clean[m] = 0;
  if (m % 4) {
    free(clean);
    sf__errf(err, SF_EFORMAT, "%s: not base64", what);
    return NULL;
  }
  unsigned char *out = sf__malloc(m / 4 * 3 + 1);
  int got = out ? EVP_DecodeBlock(out, (const unsigned char *)clean, (int)m) : -1;
  if (got < 0) {
    free(clean);
    free(out);
    sf__errf(err, SF_EFORMAT, "%s: not base64", what);
    return NULL;
  }
  if (m >= 1 && clean[m - 1] == '=') got--;
  if (m >= 2 && clean[m - 2] == '=') got--;
  out[got] = 0;
  free(clean);
  return (char *)out;
}

static int set_str(char *dst, size_t cap, const char *v, const char *what, sf_err *err) {
  if (strlen(v) >= cap)
    return sf__errf(err, SF_ELIMIT, "%s: longer than %zu characters", what, cap - 1);
  snprintf(dst, cap, "%s", v);
  return 0;
}

int sf__k8s_config_incluster(sf_k8s_config *c, const char *sa_dir, sf_err *err) {
  memset(c, 0, sizeof *c);
  if (!sa_dir) sa_dir = SF_K8S_SA_DIR;
  const char *host = getenv("KUBERNETES_SERVICE_HOST"), *port = getenv("KUBERNETES_SERVICE_PORT");
  if (!host || !*host || !port || !*port)
    return sf__errf(err, SF_EINVAL,
                    "not running in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT "
                    "are not set (use --kubeconfig outside a cluster)");
  for (const char *p = port; *p; p++)
    if (!isdigit((unsigned char)*p))
      return sf__errf(err, SF_EINVAL, "KUBERNETES_SERVICE_PORT '%s' is not a port", port);
  if (strlen(host) > 255) return sf__errf(err, SF_EINVAL, "KUBERNETES_SERVICE_HOST is too long");
  snprintf(c->server, sizeof c->server, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s",
           host, port);
  if (snprintf(c->token_file, sizeof c->token_file, "%s/token", sa_dir) >=
          (int)sizeof c->token_file ||
      snprintf(c->ca_file, sizeof c->ca_file, "%s/ca.crt", sa_dir) >= (int)sizeof c->ca_file)
    return sf__errf(err, SF_ELIMIT, "service account directory path too long");
  if (access(c->token_file, R_OK) < 0)
    return sf__errf(err, SF_EIO, "%s: %s (is a service account token mounted?)", c->token_file,
                    strerror(errno));
  if (access(c->ca_file, R_OK) < 0)
    return sf__errf(err, SF_EIO, "%s: %s", c->ca_file, strerror(errno));
  char path[4200];
  snprintf(path, sizeof path, "%s/namespace", sa_dir);
  char *ns = NULL;
  snprintf(c->ns, sizeof c->ns, "default");
  if (access(path, R_OK) == 0) {
    if (read_text(path, &ns, err) < 0) return err ? err->code : SF_EIO;
    char *t = trim(ns);
    if (!sf__k8s_dns_label(t)) {
      free(ns);
      return sf__errf(err, SF_EFORMAT, "%s: '%s' is not a namespace name", path, t);
    }
    snprintf(c->ns, sizeof c->ns, "%s", t);
    free(ns);
  }
  return 0;
}

static const cJSON *named(const cJSON *list, const char *name, const char *field) {
  const cJSON *e;
  cJSON_ArrayForEach(e, list) {
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(e, "name");
    if (cJSON_IsString(n) && !strcmp(n->valuestring, name))
      return cJSON_GetObjectItemCaseSensitive(e, field);
  }
  return NULL;
}
static const char *kstr(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
  return cJSON_IsString(v) && v->valuestring[0] ? v->valuestring : NULL;
}
static int rel_path(char *out, size_t cap, const char *dir, const char *p, sf_err *err) {
  int n = p[0] == '/' ? snprintf(out, cap, "%s", p) : snprintf(out, cap, "%s/%s", dir, p);
  if (n < 0 || (size_t)n >= cap) return sf__errf(err, SF_ELIMIT, "path '%.200s' too long", p);
  return 0;
}
static int pem_from(const cJSON *o, const char *data_key, const char *file_key, const char *dir,
                    char **out, sf_err *err) {
  const char *d = kstr(o, data_key), *f = kstr(o, file_key);
  if (d) {
    *out = b64_decode(d, err, data_key);
    return *out ? 0 : SF_EFORMAT;
  }
  if (f) {
    char path[4096];
    if (rel_path(path, sizeof path, dir, f, err) < 0) return SF_ELIMIT;
    return read_text(path, out, err);
  }
  return 0;
}

int sf__k8s_config_kubeconfig(sf_k8s_config *c, const char *path, const char *context,
                              sf_err *err) {
  memset(c, 0, sizeof *c);
  char *txt = NULL;
  cJSON *doc = NULL;
  int rc = read_text(path, &txt, err);
  if (rc < 0) return rc;
  doc = sf__k8s_yaml_parse(txt, strlen(txt), err);
  if (!doc) {
    rc = sf__errctx(err, SF_EFORMAT, "%s", path);
    goto out;
  }
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash)
    *slash = 0;
  else
    snprintf(dir, sizeof dir, ".");
  const char *ctx_name = context ? context : kstr(doc, "current-context");
  if (!ctx_name) {
    rc = sf__errf(err, SF_EFORMAT, "%s: no current-context (name one with --context)", path);
    goto out;
  }
  const cJSON *ctx = named(cJSON_GetObjectItemCaseSensitive(doc, "contexts"), ctx_name, "context");
  if (!ctx) {
    rc = sf__errf(err, SF_ENOTFOUND, "%s: no context '%s'", path, ctx_name);
    goto out;
  }
  const char *cl_name = kstr(ctx, "cluster"), *user_name = kstr(ctx, "user");
  const cJSON *cl =
      cl_name ? named(cJSON_GetObjectItemCaseSensitive(doc, "clusters"), cl_name, "cluster") : NULL;
  if (!cl) {
    rc = sf__errf(err, SF_ENOTFOUND, "%s: context '%s' names no known cluster", path, ctx_name);
    goto out;
  }
  const cJSON *user =
      user_name ? named(cJSON_GetObjectItemCaseSensitive(doc, "users"), user_name, "user") : NULL;
  const char *server = kstr(cl, "server");
  if (!server || (strncmp(server, "https://", 8) && strncmp(server, "http://", 7))) {
    rc = sf__errf(err, SF_EFORMAT, "%s: cluster '%s' has no http(s) server", path, cl_name);
    goto out;
  }
  size_t sl = strlen(server);
  if ((rc = set_str(c->server, sizeof c->server, server, "server", err)) < 0) goto out;
  if (sl && c->server[sl - 1] == '/') c->server[sl - 1] = 0;
  const char *ins = kstr(cl, "insecure-skip-tls-verify");
  c->insecure = ins && !strcmp(ins, "true");
  const char *caf = kstr(cl, "certificate-authority");
  if (kstr(cl, "certificate-authority-data")) {
    if ((rc = pem_from(cl, "certificate-authority-data", "-", dir, &c->ca_pem, err)) < 0) goto out;
  } else if (caf) {
    char p[4096];
    if ((rc = rel_path(p, sizeof p, dir, caf, err)) < 0) goto out;
    if ((rc = set_str(c->ca_file, sizeof c->ca_file, p, "certificate-authority", err)) < 0)
      goto out;
  }
  if (user) {
    if (cJSON_GetObjectItemCaseSensitive(user, "exec") ||
        cJSON_GetObjectItemCaseSensitive(user, "auth-provider")) {
      rc = sf__errf(err, SF_EUNSUPPORTED,
                    "%s: user '%s' authenticates with an exec or auth-provider plugin; use a "
                    "token, a token file or a client certificate",
                    path, user_name);
      goto out;
    }
    const char *tok = kstr(user, "token"), *tf = kstr(user, "tokenFile");
    if (tok && (rc = set_str(c->token, sizeof c->token, tok, "token", err)) < 0) goto out;
    if (tf) {
      char p[4096];
      if ((rc = rel_path(p, sizeof p, dir, tf, err)) < 0) goto out;
      if ((rc = set_str(c->token_file, sizeof c->token_file, p, "tokenFile", err)) < 0) goto out;
    }
    if ((rc = pem_from(user, "client-certificate-data", "client-certificate", dir, &c->cert_pem,
                       err)) < 0 ||
        (rc = pem_from(user, "client-key-data", "client-key", dir, &c->key_pem, err)) < 0)
      goto out;
    if (!c->cert_pem != !c->key_pem) {
      rc = sf__errf(err, SF_EFORMAT,
                    "%s: user '%s' has a client certificate without a key or the reverse", path,
                    user_name);
      goto out;
    }
  }
  const char *ns = kstr(ctx, "namespace");
  if (ns && !sf__k8s_dns_label(ns)) {
    rc = sf__errf(err, SF_EFORMAT, "%s: context namespace '%s' is not valid", path, ns);
    goto out;
  }
  snprintf(c->ns, sizeof c->ns, "%s", ns ? ns : "default");
  rc = 0;
out:
  cJSON_Delete(doc);
  free(txt);
  if (rc < 0) sf__k8s_config_deinit(c);
  return rc;
}

static char *dup_or_null(const char *s, int *fail) {
  if (!s) return NULL;
  char *d = sf__strdup(s);
  if (!d) *fail = 1;
  return d;
}
int sf__k8s_config_copy(sf_k8s_config *dst, const sf_k8s_config *src, sf_err *err) {
  *dst = *src;
  int fail = 0;
  dst->ca_pem = dup_or_null(src->ca_pem, &fail);
  dst->cert_pem = dup_or_null(src->cert_pem, &fail);
  dst->key_pem = dup_or_null(src->key_pem, &fail);
  if (fail) {
    sf__k8s_config_deinit(dst);
    return sf__errf(err, SF_ENOMEM, "out of memory");
  }
  return 0;
}
void sf__k8s_config_deinit(sf_k8s_config *c) {
  if (!c) return;
  free(c->ca_pem);
  if (c->key_pem) OPENSSL_cleanse(c->key_pem, strlen(c->key_pem));
  free(c->cert_pem);
  free(c->key_pem);
  c->ca_pem = c->cert_pem = c->key_pem = NULL;
  OPENSSL_cleanse(c->token, sizeof c->token);
}

/* ---- the client
 * ------------------------------------------------------------------------------------ */
struct sf_k8s {
  sf_k8s_config c;
  pthread_mutex_t mu;
  char token[4096]; /* current token from token_file */
  struct timespec tok_mtime;
  off_t tok_size;
  ino_t tok_ino;
  double tok_read_at;
  int tok_loaded;
};

int sf__k8s_new(sf_k8s **out, const sf_k8s_config *c, sf_err *err) {
  *out = NULL;
  pthread_once(&curl_once, curl_init);
  if (!c->server[0]) return sf__errf(err, SF_EINVAL, "Kubernetes: no API server address");
  sf_k8s *k = sf__calloc(1, sizeof *k);
  if (!k) return sf__errf(err, SF_ENOMEM, "out of memory");
  if (sf__k8s_config_copy(&k->c, c, err) < 0) {
    free(k);
    return err ? err->code : SF_ENOMEM;
  }
  if (!k->c.ns[0]) snprintf(k->c.ns, sizeof k->c.ns, "default");
  pthread_mutex_init(&k->mu, NULL);
  *out = k;
  return 0;
}

void sf__k8s_free(sf_k8s *k) {
  if (!k) return;
  sf__k8s_config_deinit(&k->c);
  OPENSSL_cleanse(k->token, sizeof k->token);
  pthread_mutex_destroy(&k->mu);
  free(k);
}

const char *sf__k8s_namespace(const sf_k8s *k) {
  return k->c.ns;
}
const sf_k8s_config *sf__k8s_config(const sf_k8s *k) {
  return &k->c;
}

/* The bearer token: the file is read again when it changed (a projected service-account token
 * is rotated by the kubelet) or a minute passed, or when force (after a 401). */
static int bearer(sf_k8s *k, int force, char *out, size_t cap, sf_err *err) {
  out[0] = 0;
  if (!k->c.token_file[0]) {
    if (k->c.token[0]) snprintf(out, cap, "%s", k->c.token);
    return 0;
  }
  pthread_mutex_lock(&k->mu);
  int rc = 0;
  struct stat st;
  if (stat(k->c.token_file, &st) < 0) {
    rc = sf__errf(err, SF_EIO, "token file %s: %s", k->c.token_file, strerror(errno));
    goto out;
  }
  double now = sf__now();
  if (force || !k->tok_loaded || st.st_size != k->tok_size || st.st_ino != k->tok_ino ||
      st.st_mtim.tv_sec != k->tok_mtime.tv_sec || st.st_mtim.tv_nsec != k->tok_mtime.tv_nsec ||
      now - k->tok_read_at > TOKEN_REFRESH_S) {
    void *d = NULL;
    size_t n = 0;
    if ((rc = sf__read_file(k->c.token_file, sizeof k->token - 1, &d, &n, err)) < 0) goto out;
    char *t = sf__malloc(n + 1);
    if (!t) {
      free(d);
      rc = sf__errf(err, SF_ENOMEM, "out of memory");
      goto out;
    }
    memcpy(t, d, n);
    t[n] = 0;
    snprintf(k->token, sizeof k->token, "%s", trim(t));
    OPENSSL_cleanse(t, n);
    OPENSSL_cleanse(d, n);
    free(t);
    free(d);
    k->tok_loaded = 1;
    k->tok_size = st.st_size;
    k->tok_ino = st.st_ino;
    k->tok_mtime = st.st_mtim;
    k->tok_read_at = now;
  }
  snprintf(out, cap, "%s", k->token);
out:
  pthread_mutex_unlock(&k->mu);
  return rc;
}

size_t sf__curl_buf_write(char *p, size_t sz, size_t n, void *ud) {
  sf_curl_buf *b = ud;
  size_t add = sz * n;
  if (b->len + add > b->max) {
    b->over = 1;
    return 0;
  }
  if (b->len + add + 1 > b->cap) {
    size_t nc = (b->len + add + 1) * 2;
    if (nc > b->max + 1) nc = b->max + 1;
    char *d = realloc(b->d, nc);
    if (!d) return 0;
    b->d = d;
    b->cap = nc;
  }
  memcpy(b->d + b->len, p, add);
  b->len += add;
  b->d[b->len] = 0;
  return add;
}

/* An easy handle for method url with the client's TLS and authentication settings. */
static CURL *easy_new(sf_k8s *k, const char *method, const char *path, const char *ctype,
                      const char *body, int force_token, struct curl_slist **hdrs, sf_err *err) {
  char url[4096 + 512];
  if (snprintf(url, sizeof url, "%s%s", k->c.server, path) >= (int)sizeof url) {
    sf__errf(err, SF_ELIMIT, "request path too long");
    return NULL;
  }
  char tok[4096], auth[4200];
  if (bearer(k, force_token, tok, sizeof tok, err) < 0) return NULL;
  CURL *h = curl_easy_init();
  if (!h) {
    sf__errf(err, SF_ENOMEM, "curl: cannot make a handle");
    return NULL;
  }
  *hdrs = curl_slist_append(*hdrs, "Accept: application/json");
  if (tok[0]) {
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", tok);
    *hdrs = curl_slist_append(*hdrs, auth);
    OPENSSL_cleanse(auth, sizeof auth);
  }
  OPENSSL_cleanse(tok, sizeof tok);
  if (ctype) {
    char ct[200];
    snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
    *hdrs = curl_slist_append(*hdrs, ct);
  }
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, *hdrs);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "seifer/" SF_VERSION);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 30L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 10L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  if (strcmp(method, "GET")) curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
  if (body) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
  }
  if (k->c.insecure) {
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
  } else if (k->c.ca_pem) {
    struct curl_blob b = {k->c.ca_pem, strlen(k->c.ca_pem), CURL_BLOB_COPY};
    curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &b);
  } else if (k->c.ca_file[0]) {
    curl_easy_setopt(h, CURLOPT_CAINFO, k->c.ca_file);
  }
  if (k->c.cert_pem && k->c.key_pem) {
    struct curl_blob c = {k->c.cert_pem, strlen(k->c.cert_pem), CURL_BLOB_COPY};
    struct curl_blob kk = {k->c.key_pem, strlen(k->c.key_pem), CURL_BLOB_COPY};
    curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
    curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &c);
    curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
    curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &kk);
  }
  return h;
}

void sf__k8s_resp_free(sf_k8s_resp *r) {
  if (!r) return;
  free(r->body);
  cJSON_Delete(r->json);
  memset(r, 0, sizeof *r);
}

static int http_error(sf_k8s_resp *r, const char *method, const char *path, sf_err *err) {
  const cJSON *msg = r->json ? cJSON_GetObjectItemCaseSensitive(r->json, "message") : NULL;
  const cJSON *reason = r->json ? cJSON_GetObjectItemCaseSensitive(r->json, "reason") : NULL;
  if (cJSON_IsString(reason)) snprintf(r->reason, sizeof r->reason, "%s", reason->valuestring);
  int code = r->code == 404 ? SF_ENOTFOUND : SF_EIO;
  return sf__errf(err, code, "%s %s: %ld %s: %.600s", method, path, r->code,
                  r->reason[0] ? r->reason : "error",
                  cJSON_IsString(msg) ? msg->valuestring : (r->body ? r->body : ""));
}

int sf__k8s_request(sf_k8s *k, const char *method, const char *path, const char *ctype,
                    const char *body, sf_k8s_resp *r, sf_err *err) {
  sf_k8s_resp tmp;
  if (!r) r = &tmp;
  memset(r, 0, sizeof *r);
  int rc = 0;
  for (int attempt = 0; attempt < 2; attempt++) {
    struct curl_slist *hdrs = NULL;
    CURL *h = easy_new(k, method, path, ctype, body, attempt > 0, &hdrs, err);
    if (!h) {
      curl_slist_free_all(hdrs);
      rc = err ? err->code : SF_EIO;
      goto out;
    }
    sf_curl_buf b = {.max = MAX_RESPONSE};
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sf__curl_buf_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(k->c.timeout_ms > 0 ? k->c.timeout_ms : 15000));
    CURLcode cc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(h);
    curl_slist_free_all(hdrs);
    if (cc != CURLE_OK) {
      free(b.d);
      rc = sf__errf(err, SF_EIO, "%s %s%s: %s", method, k->c.server, path,
                    b.over ? "response too large" : curl_easy_strerror(cc));
      goto out;
    }
    if (code == 401 && attempt == 0 && k->c.token_file[0]) { /* the token may have rotated */
      free(b.d);
      continue;
    }
    r->code = code;
    r->body = b.d ? b.d : sf__strdup("");
    r->len = b.len;
    r->json = r->body ? cJSON_ParseWithLength(r->body, r->len) : NULL;
    break;
  }
  if (r->code < 200 || r->code >= 300) rc = http_error(r, method, path, err);
out:
  if (r == &tmp) sf__k8s_resp_free(&tmp);
  return rc;
}

int sf__k8s_path(char *out, size_t cap, const sf_k8s_kind *kd, const char *ns, const char *name,
                 const char *sub, sf_err *err) {
  if (kd->namespaced && !sf__k8s_dns_label(ns ? ns : ""))
    return sf__errf(err, SF_EINVAL, "%s: namespace '%s' is not valid", kd->plural, ns ? ns : "");
  if (name && !sf__k8s_dns_subdomain(name))
    return sf__errf(err, SF_EINVAL, "%s: name '%s' is not a DNS-1123 subdomain", kd->plural, name);
  int n = snprintf(out, cap, "%s%s%s/%s%s%s%s%s", kd->api, kd->namespaced ? "/namespaces/" : "",
                   kd->namespaced ? ns : "", kd->plural, name ? "/" : "", name ? name : "",
                   sub ? "/" : "", sub ? sub : "");
  if (n < 0 || (size_t)n >= cap) return sf__errf(err, SF_ELIMIT, "path too long");
  return 0;
}

int sf__k8s_get(sf_k8s *k, const char *path, cJSON **obj, long *code, sf_err *err) {
  sf_k8s_resp r;
  *obj = NULL;
  int rc = sf__k8s_request(k, "GET", path, NULL, NULL, &r, err);
  if (code) *code = r.code;
  if (rc == 0) {
    if (!cJSON_IsObject(r.json))
      rc = sf__errf(err, SF_EFORMAT, "GET %s: the answer is not a JSON object", path);
    else {
      *obj = r.json;
      r.json = NULL;
    }
  }
  sf__k8s_resp_free(&r);
  return rc;
}

static char *escape(const char *s) {
  CURL *h = curl_easy_init();
  char *e = h ? curl_easy_escape(h, s, 0) : NULL;
  char *out = e ? sf__strdup(e) : NULL;
  curl_free(e);
  if (h) curl_easy_cleanup(h);
  return out;
}

int sf__k8s_list(sf_k8s *k, const sf_k8s_kind *kd, const char *ns, const char *label_selector,
                 cJSON **items, char *rv, size_t rv_cap, sf_err *err) {
  *items = NULL;
  char path[1024];
  int rc = sf__k8s_path(path, sizeof path, kd, ns ? ns : k->c.ns, NULL, NULL, err);
  if (rc < 0) return rc;
  if (label_selector && *label_selector) {
    char *e = escape(label_selector);
    if (!e) return sf__errf(err, SF_ENOMEM, "out of memory");
    size_t l = strlen(path);
    int n = snprintf(path + l, sizeof path - l, "?labelSelector=%s", e);
    free(e);
    if (n < 0 || (size_t)n >= sizeof path - l)
      return sf__errf(err, SF_ELIMIT, "label selector too long");
  }
  cJSON *l = NULL;
  if ((rc = sf__k8s_get(k, path, &l, NULL, err)) < 0) return rc;
  cJSON *it = cJSON_DetachItemFromObjectCaseSensitive(l, "items");
  const cJSON *md = cJSON_GetObjectItemCaseSensitive(l, "metadata");
  const cJSON *v = md ? cJSON_GetObjectItemCaseSensitive(md, "resourceVersion") : NULL;
  if (!cJSON_IsString(v) || strlen(v->valuestring) >= rv_cap) {
    rc = sf__errf(err, SF_EFORMAT, "GET %s: the list has no resourceVersion", path);
  } else if (it && !cJSON_IsArray(it)) {
    rc = sf__errf(err, SF_EFORMAT, "GET %s: items is not a list", path);
  } else {
    snprintf(rv, rv_cap, "%s", v->valuestring);
    *items = it ? it : cJSON_CreateArray();
    it = NULL;
  }
  cJSON_Delete(it);
  cJSON_Delete(l);
  return rc;
}

int sf__k8s_apply(sf_k8s *k, const char *path, const cJSON *obj, const char *manager, int force,
                  cJSON **out, long *code, sf_err *err) {
  if (out) *out = NULL;
  if (!manager || !*manager || strlen(manager) > 128)
    return sf__errf(err, SF_EINVAL, "apply: a field manager is needed");
  char *e = escape(manager);
  char *body = cJSON_PrintUnformatted(obj);
  char full[1400];
  int rc;
  if (!e || !body) {
    rc = sf__errf(err, SF_ENOMEM, "out of memory");
    goto done;
  }
  if (snprintf(full, sizeof full, "%s?fieldManager=%s%s", path, e, force ? "&force=true" : "") >=
      (int)sizeof full) {
    rc = sf__errf(err, SF_ELIMIT, "apply: path too long");
    goto done;
  }
  sf_k8s_resp r;
  rc = sf__k8s_request(k, "PATCH", full, "application/apply-patch+yaml", body, &r, err);
  if (code) *code = r.code;
  if (rc < 0 && r.code == 409 && r.json) { /* name the conflicting fields */
    const cJSON *c, *causes = cJSON_GetObjectItemCaseSensitive(
                        cJSON_GetObjectItemCaseSensitive(r.json, "details"), "causes");
    char fields[512] = "";
    size_t off = 0;
    cJSON_ArrayForEach(c, causes) {
      const cJSON *f = cJSON_GetObjectItemCaseSensitive(c, "field");
      if (cJSON_IsString(f) && off < sizeof fields)
        off += (size_t)snprintf(fields + off, sizeof fields - off, "%s%s", off ? ", " : "",
                                f->valuestring);
    }
    if (fields[0]) sf__errctx(err, rc, "conflicting fields %s", fields);
  }
  if (rc == 0 && out) {
    *out = r.json;
    r.json = NULL;
  }
  sf__k8s_resp_free(&r);
done:
  free(e);
  free(body);
  return rc;
}

int sf__k8s_delete(sf_k8s *k, const char *path, long *code, sf_err *err) {
  sf_k8s_resp r;
  char full[1200];
  if (snprintf(full, sizeof full, "%s?propagationPolicy=Background", path) >= (int)sizeof full)
    return sf__errf(err, SF_ELIMIT, "delete: path too long");
  int rc = sf__k8s_request(k, "DELETE", full, NULL, NULL, &r, err);
  if (code) *code = r.code;
  if (rc == SF_ENOTFOUND) rc = 0;
  sf__k8s_resp_free(&r);
  return rc;
}

/* ---- informer
 * ------------------------------------------------------------------------------------- */
struct sf_k8s_informer {
  sf_k8s *k;
  sf_k8s_informer_opts o;
  char ns[64], sel[512];
  pthread_t th;
  int started;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stop;
  CURLM *multi; /* the running watch (woken on stop) */
  cJSON *cache; /* "ns/name" -> object */
  uint64_t gen;
  int pfd[2];
  sf_k8s_informer_stats st;
  int need_list;
  int abort_watch; /* an ERROR event ended the watch */
  char *line;
  size_t len, cap;
  int line_over;
};

static void inf_notify(sf_k8s_informer *f) { /* locked */
  f->gen++;
  pthread_cond_broadcast(&f->cv);
  char c = 1;
  if (write(f->pfd[1], &c, 1) < 0) { /* full pipe: a change is already pending */
  }
}

static int obj_key(const cJSON *obj, char *out, size_t cap) {
  const cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
  const char *name = kstr(md, "name"), *ns = kstr(md, "namespace");
  if (!name) return -1;
  snprintf(out, cap, "%s/%s", ns ? ns : "", name);
  return 0;
}

static void inf_error(sf_k8s_informer *f, const char *msg) {
  pthread_mutex_lock(&f->mu);
  f->st.errors++;
  snprintf(f->st.last_error, sizeof f->st.last_error, "%.255s", msg);
  pthread_mutex_unlock(&f->mu);
}

/* One watch event line. */
static void inf_event(sf_k8s_informer *f, const char *line, size_t n) {
  cJSON *ev = cJSON_ParseWithLength(line, n);
  const char *type = kstr(ev, "type");
  cJSON *obj = cJSON_GetObjectItemCaseSensitive(ev, "object");
  if (!type || !cJSON_IsObject(obj)) {
    inf_error(f, "malformed watch event");
    cJSON_Delete(ev);
    return;
  }
  const char *rv = kstr(cJSON_GetObjectItemCaseSensitive(obj, "metadata"), "resourceVersion");
  char key[600];
  int changed = 0;
  pthread_mutex_lock(&f->mu);
  if (!strcmp(type, "ERROR")) {
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(obj, "code");
    const char *msg = kstr(obj, "message");
    if (cJSON_IsNumber(code) && code->valueint == 410) {
      f->st.expired++;
      f->need_list = 1;
    } else {
      f->st.errors++;
      f->need_list = 1;
    }
    snprintf(f->st.last_error, sizeof f->st.last_error, "watch: %s", msg ? msg : "error event");
    f->abort_watch = 1;
  } else if (!strcmp(type, "BOOKMARK")) {
    if (rv && strlen(rv) < sizeof f->st.rv) snprintf(f->st.rv, sizeof f->st.rv, "%s", rv);
    f->st.bookmarks++;
  } else if ((!strcmp(type, "ADDED") || !strcmp(type, "MODIFIED") || !strcmp(type, "DELETED")) &&
             obj_key(obj, key, sizeof key) == 0) {
    cJSON_DeleteItemFromObjectCaseSensitive(f->cache, key);
    if (strcmp(type, "DELETED")) cJSON_AddItemToObject(f->cache, key, cJSON_Duplicate(obj, 1));
    if (rv && strlen(rv) < sizeof f->st.rv) snprintf(f->st.rv, sizeof f->st.rv, "%s", rv);
    f->st.events++;
    changed = 1;
    inf_notify(f);
  }
  pthread_mutex_unlock(&f->mu);
  if (changed && f->o.on_event) f->o.on_event(f->o.ud, type, obj);
  cJSON_Delete(ev);
}

static size_t inf_write(char *p, size_t sz, size_t n, void *ud) {
  sf_k8s_informer *f = ud;
  size_t add = sz * n;
  for (size_t i = 0; i < add; i++) {
    if (p[i] == '\n') {
      if (!f->line_over && f->len) inf_event(f, f->line, f->len);
      if (f->line_over) inf_error(f, "watch event too large");
      f->len = 0;
      f->line_over = 0;
      if (f->abort_watch) return 0;
      continue;
    }
    if (f->line_over) continue;
    if (f->len + 1 >= f->cap) {
      size_t nc = f->cap ? f->cap * 2 : 65536;
      if (nc > MAX_WATCH_LINE) {
        f->line_over = 1;
        continue;
      }
      char *l = realloc(f->line, nc);
      if (!l) {
        f->line_over = 1;
        continue;
      }
      f->line = l;
      f->cap = nc;
    }
    f->line[f->len++] = p[i];
  }
  return add;
}

/* Sleep up to s seconds unless stopped; returns 1 when stopped. */
static int inf_sleep(sf_k8s_informer *f, double s) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  double t = ts.tv_sec + ts.tv_nsec * 1e-9 + s;
  ts.tv_sec = (time_t)t;
  ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
  pthread_mutex_lock(&f->mu);
  while (!f->stop && pthread_cond_timedwait(&f->cv, &f->mu, &ts) == 0) {
  }
  int stop = f->stop;
  pthread_mutex_unlock(&f->mu);
  return stop;
}

static int inf_list(sf_k8s_informer *f) {
  cJSON *items = NULL;
  char rv[32];
  sf_err err = {0};
  if (sf__k8s_list(f->k, f->o.kind, f->ns, f->sel, &items, rv, sizeof rv, &err) < 0) {
    inf_error(f, err.msg);
    return -1;
  }
  cJSON *cache = cJSON_CreateObject();
  cJSON *it;
  cJSON_ArrayForEach(it, items) {
    char key[600];
    if (obj_key(it, key, sizeof key) == 0 && !cJSON_GetObjectItemCaseSensitive(cache, key))
      cJSON_AddItemToObject(cache, key, cJSON_Duplicate(it, 1));
  }
  cJSON_Delete(items);
  pthread_mutex_lock(&f->mu);
  cJSON_Delete(f->cache);
  f->cache = cache;
  snprintf(f->st.rv, sizeof f->st.rv, "%s", rv);
  f->st.lists++;
  f->st.synced = 1;
  f->need_list = 0;
  inf_notify(f);
  pthread_mutex_unlock(&f->mu);
  if (f->o.on_event) f->o.on_event(f->o.ud, "SYNC", NULL);
  return 0;
}

/* One watch from the current resourceVersion until the server ends it, an ERROR event, a
 * failure or stop. Returns 0 on a normal end, -1 on a failure. */
static int inf_watch(sf_k8s_informer *f) {
  char path[1400], base[1024];
  sf_err err = {0};
  if (sf__k8s_path(base, sizeof base, f->o.kind, f->ns, NULL, NULL, &err) < 0) {
    inf_error(f, err.msg);
    return -1;
  }
  char rv[32];
  pthread_mutex_lock(&f->mu);
  snprintf(rv, sizeof rv, "%s", f->st.rv);
  f->st.watches++;
  f->abort_watch = 0;
  pthread_mutex_unlock(&f->mu);
  int tmo = f->o.watch_timeout_s > 0 ? f->o.watch_timeout_s : 300;
  char *sel = f->sel[0] ? escape(f->sel) : NULL;
  snprintf(path, sizeof path,
           "%s?watch=1&resourceVersion=%s&allowWatchBookmarks=true&timeoutSeconds=%d%s%s", base, rv,
           tmo, sel ? "&labelSelector=" : "", sel ? sel : "");
  free(sel);
  struct curl_slist *hdrs = NULL;
  CURL *h = easy_new(f->k, "GET", path, NULL, NULL, 0, &hdrs, &err);
  if (!h) {
    curl_slist_free_all(hdrs);
    inf_error(f, err.msg);
    return -1;
  }
  f->len = 0;
  f->line_over = 0;
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, inf_write);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, f);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(tmo + 30) * 1000L);
  CURLM *m = curl_multi_init();
  int rc = 0;
  if (!m) {
    curl_easy_cleanup(h);
    curl_slist_free_all(hdrs);
    inf_error(f, "curl: cannot make a multi handle");
    return -1;
  }
  curl_multi_add_handle(m, h);
  pthread_mutex_lock(&f->mu);
  f->multi = m;
  int stop = f->stop;
  pthread_mutex_unlock(&f->mu);
  int running = 1;
  CURLcode result = CURLE_OK;
  while (!stop && running) {
    if (curl_multi_perform(m, &running) != CURLM_OK) {
      result = CURLE_FAILED_INIT;
      break;
    }
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m, &left)))
      if (msg->msg == CURLMSG_DONE) result = msg->data.result;
    if (!running) break;
    curl_multi_poll(m, NULL, 0, 1000, NULL);
    pthread_mutex_lock(&f->mu);
    stop = f->stop;
    pthread_mutex_unlock(&f->mu);
  }
  long code = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
  pthread_mutex_lock(&f->mu);
  f->multi = NULL;
  int aborted = f->abort_watch;
  pthread_mutex_unlock(&f->mu);
  curl_multi_remove_handle(m, h);
  curl_easy_cleanup(h);
  curl_multi_cleanup(m);
  curl_slist_free_all(hdrs);
  if (stop || aborted) return 0;
  if (code == 410) { /* some servers answer the request itself with 410 */
    pthread_mutex_lock(&f->mu);
    f->st.expired++;
    f->need_list = 1;
    pthread_mutex_unlock(&f->mu);
    return 0;
  }
  if (code != 200) {
    char m2[200];
    snprintf(m2, sizeof m2, "watch %s: HTTP %ld%s%s", f->o.kind->plural, code,
             result != CURLE_OK ? ": " : "", result != CURLE_OK ? curl_easy_strerror(result) : "");
    inf_error(f, m2);
    return -1;
  }
  if (result != CURLE_OK && result != CURLE_OPERATION_TIMEDOUT) {
    char m2[200];
    snprintf(m2, sizeof m2, "watch %s: %s", f->o.kind->plural, curl_easy_strerror(result));
    inf_error(f, m2);
    rc = -1;
  }
  return rc;
}

static void *inf_main(void *arg) {
  sf_k8s_informer *f = arg;
  double backoff = 0.1;
  for (;;) {
    pthread_mutex_lock(&f->mu);
    int stop = f->stop, need = f->need_list;
    pthread_mutex_unlock(&f->mu);
    if (stop) break;
    int rc = need ? inf_list(f) : inf_watch(f);
    if (rc < 0) {
      if (inf_sleep(f, backoff)) break;
      backoff = backoff * 2 > 5 ? 5 : backoff * 2;
    } else if (need) {
      backoff = 0.1;
    }
  }
  return NULL;
}

int sf__k8s_informer_start(sf_k8s_informer **out, const sf_k8s_config *c,
                           const sf_k8s_informer_opts *o, sf_err *err) {
  *out = NULL;
  if (!o->kind) return sf__errf(err, SF_EINVAL, "informer: no kind");
  sf_k8s_informer *f = sf__calloc(1, sizeof *f);
  if (!f) return sf__errf(err, SF_ENOMEM, "out of memory");
  f->pfd[0] = f->pfd[1] = -1;
  int rc = sf__k8s_new(&f->k, c, err);
  if (rc < 0) goto fail;
  f->o = *o;
  snprintf(f->ns, sizeof f->ns, "%s", o->ns ? o->ns : f->k->c.ns);
  if (o->label_selector && strlen(o->label_selector) >= sizeof f->sel) {
    rc = sf__errf(err, SF_ELIMIT, "informer: label selector too long");
    goto fail;
  }
  snprintf(f->sel, sizeof f->sel, "%s", o->label_selector ? o->label_selector : "");
  f->o.label_selector = NULL;
  f->o.ns = NULL;
  f->cache = cJSON_CreateObject();
  f->need_list = 1;
  if (pipe2(f->pfd, O_CLOEXEC | O_NONBLOCK) < 0) {
    rc = sf__errf(err, SF_EIO, "informer: pipe: %s", strerror(errno));
    goto fail;
  }
  pthread_mutex_init(&f->mu, NULL);
  pthread_cond_init(&f->cv, NULL);
  if (pthread_create(&f->th, NULL, inf_main, f) != 0) {
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    rc = sf__errf(err, SF_EIO, "informer: cannot start a thread");
    goto fail;
  }
  f->started = 1;
  *out = f;
  return 0;
fail:
  if (f->pfd[0] >= 0) close(f->pfd[0]);
  if (f->pfd[1] >= 0) close(f->pfd[1]);
  cJSON_Delete(f->cache);
  sf__k8s_free(f->k);
  free(f);
  return rc;
}

void sf__k8s_informer_stop(sf_k8s_informer *f) {
  if (!f) return;
  pthread_mutex_lock(&f->mu);
  f->stop = 1;
  if (f->multi) curl_multi_wakeup(f->multi);
  pthread_cond_broadcast(&f->cv);
  pthread_mutex_unlock(&f->mu);
  pthread_join(f->th, NULL);
  pthread_mutex_destroy(&f->mu);
  pthread_cond_destroy(&f->cv);
  close(f->pfd[0]);
  close(f->pfd[1]);
  cJSON_Delete(f->cache);
  free(f->line);
  sf__k8s_free(f->k);
  free(f);
}

cJSON *sf__k8s_informer_snapshot(sf_k8s_informer *f, uint64_t *gen) {
  cJSON *a = cJSON_CreateArray();
  pthread_mutex_lock(&f->mu);
  const cJSON *it;
  cJSON_ArrayForEach(it, f->cache) cJSON_AddItemToArray(a, cJSON_Duplicate(it, 1));
  if (gen) *gen = f->gen;
  pthread_mutex_unlock(&f->mu);
  return a;
}

uint64_t sf__k8s_informer_gen(sf_k8s_informer *f) {
  pthread_mutex_lock(&f->mu);
  uint64_t g = f->gen;
  pthread_mutex_unlock(&f->mu);
  return g;
}

uint64_t sf__k8s_informer_wait(sf_k8s_informer *f, uint64_t seen, int timeout_ms) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  double t = ts.tv_sec + ts.tv_nsec * 1e-9 + timeout_ms / 1000.0;
  ts.tv_sec = (time_t)t;
  ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
  pthread_mutex_lock(&f->mu);
  while (f->gen == seen && pthread_cond_timedwait(&f->cv, &f->mu, &ts) == 0) {
  }
  uint64_t g = f->gen;
  pthread_mutex_unlock(&f->mu);
  return g;
}

int sf__k8s_informer_fd(sf_k8s_informer *f) {
  return f->pfd[0];
}

void sf__k8s_informer_stats(sf_k8s_informer *f, sf_k8s_informer_stats *st) {
  pthread_mutex_lock(&f->mu);
  *st = f->st;
  pthread_mutex_unlock(&f->mu);
}

/* ---- leader election
 * ------------------------------------------------------------------------------- */
static void lease_defaults(const sf_k8s_lease_opts *o, int *lease, int *renew, int *retry) {
  *lease = o->lease_ms > 0 ? o->lease_ms : 15000;
  *renew = o->renew_ms > 0 ? o->renew_ms : 10000;
  *retry = o->retry_ms > 0 ? o->retry_ms : 2000;
}

static void read_record(const cJSON *lease, sf_k8s_lease_state *r) {
  const cJSON *sp = cJSON_GetObjectItemCaseSensitive(lease, "spec");
  const char *h = kstr(sp, "holderIdentity"), *a = kstr(sp, "acquireTime"),
             *n = kstr(sp, "renewTime");
  const cJSON *d = cJSON_GetObjectItemCaseSensitive(sp, "leaseDurationSeconds");
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(sp, "leaseTransitions");
  snprintf(r->holder, sizeof r->holder, "%s", h ? h : "");
  snprintf(r->acquire, sizeof r->acquire, "%s", a ? a : "");
  snprintf(r->renew, sizeof r->renew, "%s", n ? n : "");
  r->duration_s = cJSON_IsNumber(d) ? d->valueint : 0;
  r->transitions = cJSON_IsNumber(t) ? t->valueint : 0;
}
static int same_record(const sf_k8s_lease_state *a, const sf_k8s_lease_state *b) {
  return !strcmp(a->holder, b->holder) && !strcmp(a->acquire, b->acquire) &&
         !strcmp(a->renew, b->renew) && a->duration_s == b->duration_s &&
         a->transitions == b->transitions;
}
static void lost(sf_k8s_lease_state *st) {
  if (st->leading) st->losses++;
  st->leading = 0;
}

int sf__k8s_lease_try(sf_k8s *k, const sf_k8s_lease_opts *o, sf_k8s_lease_state *st, double now,
                      sf_err *err) {
  int lease_ms, renew_ms, retry_ms;
  lease_defaults(o, &lease_ms, &renew_ms, &retry_ms);
  if (!o->identity || !*o->identity || strlen(o->identity) >= sizeof st->holder)
    return sf__errf(err, SF_EINVAL, "lease: an identity is needed");
  if (renew_ms >= lease_ms || retry_ms >= renew_ms)
    return sf__errf(err, SF_EINVAL,
                    "lease: need retry (%d ms) < renew deadline (%d ms) < lease duration (%d ms)",
                    retry_ms, renew_ms, lease_ms);
  const char *ns = o->ns ? o->ns : k->c.ns;
  char path[512], coll[512], micro[40];
  int rc = sf__k8s_path(path, sizeof path, &sf__k8s_leases, ns, o->name, NULL, err);
  if (rc < 0 || (rc = sf__k8s_path(coll, sizeof coll, &sf__k8s_leases, ns, NULL, NULL, err)) < 0)
    return rc;
  sf__k8s_microtime(wall_now(), micro, sizeof micro);
  int dur_s = (lease_ms + 999) / 1000;
  cJSON *cur = NULL;
  long code = 0;
  rc = sf__k8s_get(k, path, &cur, &code, err);
  if (rc == SF_ENOTFOUND) { /* nobody holds it: create it */
    sf_k8s_lease_state rec = {.duration_s = dur_s};
    snprintf(rec.holder, sizeof rec.holder, "%s", o->identity);
    snprintf(rec.acquire, sizeof rec.acquire, "%s", micro);
    snprintf(rec.renew, sizeof rec.renew, "%s", micro);
    cJSON *l = sf__k8s_lease_object(ns, o->name, &rec, NULL);
    char *body = cJSON_PrintUnformatted(l);
    cJSON_Delete(l);
    sf_k8s_resp r;
    rc = body ? sf__k8s_request(k, "POST", coll, "application/json", body, &r, err) : SF_ENOMEM;
    free(body);
    long c2 = body ? r.code : 0;
    if (body) sf__k8s_resp_free(&r);
    if (rc < 0) {
      if (c2 == 409) { /* another candidate created it first */
        lost(st);
        return 0;
      }
      return rc;
    }
    memcpy(st->holder, rec.holder, sizeof st->holder);
    memcpy(st->acquire, rec.acquire, sizeof st->acquire);
    memcpy(st->renew, rec.renew, sizeof st->renew);
    st->duration_s = rec.duration_s;
    st->transitions = 0;
    st->observed_at = st->renewed_at = now;
    if (!st->leading) st->acquisitions++;
    st->leading = 1;
    return 1;
  }
  if (rc < 0) return rc;
  sf_k8s_lease_state seen = {0};
  read_record(cur, &seen);
  const char *rv = kstr(cJSON_GetObjectItemCaseSensitive(cur, "metadata"), "resourceVersion");
  char rvb[64];
  snprintf(rvb, sizeof rvb, "%s", rv ? rv : "");
  cJSON_Delete(cur);
  if (!same_record(&seen, st) || st->observed_at == 0) {
    memcpy(st->holder, seen.holder, sizeof st->holder);
    memcpy(st->acquire, seen.acquire, sizeof st->acquire);
    memcpy(st->renew, seen.renew, sizeof st->renew);
    st->duration_s = seen.duration_s;
    st->transitions = seen.transitions;
    st->observed_at = now;
  }
  int mine = !strcmp(seen.holder, o->identity);
  if (seen.holder[0] && !mine && st->observed_at + seen.duration_s > now) {
    lost(st);
    return 0; /* held by another and not yet expired (as this candidate has observed it) */
  }
  sf_k8s_lease_state rec = seen;
  snprintf(rec.holder, sizeof rec.holder, "%s", o->identity);
  rec.duration_s = dur_s;
  snprintf(rec.renew, sizeof rec.renew, "%s", micro);
  if (!mine) {
    snprintf(rec.acquire, sizeof rec.acquire, "%s", micro);
    rec.transitions = seen.transitions + 1;
  }
  cJSON *l = sf__k8s_lease_object(ns, o->name, &rec, rvb);
  char *body = cJSON_PrintUnformatted(l);
  cJSON_Delete(l);
  if (!body) return sf__errf(err, SF_ENOMEM, "out of memory");
  sf_k8s_resp r;
  rc = sf__k8s_request(k, "PUT", path, "application/json", body, &r, err);
  free(body);
  long c2 = r.code;
  sf__k8s_resp_free(&r);
  if (rc < 0) {
    if (c2 == 409) { /* someone wrote it between our read and write */
      lost(st);
      return 0;
    }
    return rc;
  }
  memcpy(st->holder, rec.holder, sizeof st->holder);
  memcpy(st->acquire, rec.acquire, sizeof st->acquire);
  memcpy(st->renew, rec.renew, sizeof st->renew);
  st->duration_s = rec.duration_s;
  st->transitions = rec.transitions;
  st->observed_at = st->renewed_at = now;
  if (!st->leading) st->acquisitions++;
  st->leading = 1;
  return 1;
}

int sf__k8s_lease_release(sf_k8s *k, const sf_k8s_lease_opts *o, sf_k8s_lease_state *st,
                          sf_err *err) {
  const char *ns = o->ns ? o->ns : k->c.ns;
  char path[512];
  int rc = sf__k8s_path(path, sizeof path, &sf__k8s_leases, ns, o->name, NULL, err);
  if (rc < 0) return rc;
  cJSON *cur = NULL;
  if ((rc = sf__k8s_get(k, path, &cur, NULL, err)) < 0) return rc;
  sf_k8s_lease_state seen = {0};
  read_record(cur, &seen);
  const char *rv = kstr(cJSON_GetObjectItemCaseSensitive(cur, "metadata"), "resourceVersion");
  char rvb[64];
  snprintf(rvb, sizeof rvb, "%s", rv ? rv : "");
  cJSON_Delete(cur);
  st->leading = 0;
  if (strcmp(seen.holder, o->identity)) return 0; /* not ours */
  char micro[40];
  sf__k8s_microtime(wall_now(), micro, sizeof micro);
  sf_k8s_lease_state rec = seen;
  rec.holder[0] = 0;
  rec.duration_s = 1;
  snprintf(rec.acquire, sizeof rec.acquire, "%s", micro);
  snprintf(rec.renew, sizeof rec.renew, "%s", micro);
  cJSON *l = sf__k8s_lease_object(ns, o->name, &rec, rvb);
  char *body = cJSON_PrintUnformatted(l);
  cJSON_Delete(l);
  if (!body) return sf__errf(err, SF_ENOMEM, "out of memory");
  rc = sf__k8s_request(k, "PUT", path, "application/json", body, NULL, err);
  free(body);
  return rc;
}

struct sf_k8s_elector {
  sf_k8s *k;
  sf_k8s_lease_opts o;
  char ns[64], name[256], id[256];
  pthread_t th;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stop;
  sf_k8s_lease_state st;
};

static void *elector_main(void *arg) {
  sf_k8s_elector *e = arg;
  int lease_ms, renew_ms, retry_ms;
  lease_defaults(&e->o, &lease_ms, &renew_ms, &retry_ms);
  sf_k8s_lease_state st;
  pthread_mutex_lock(&e->mu);
  st = e->st;
  pthread_mutex_unlock(&e->mu);
  for (;;) {
    sf_err err = {0};
    double now = sf__now();
    int rc = sf__k8s_lease_try(e->k, &e->o, &st, now, &err);
    if (rc < 0) sf__logf("leader", "lease %s/%s: %s", e->ns, e->name, err.msg);
    pthread_mutex_lock(&e->mu);
    if (e->st.leading != st.leading)
      sf__logf("leader", "%s %s lease %s/%s", e->id, st.leading ? "holds" : "lost", e->ns, e->name);
    e->st = st;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double t = ts.tv_sec + ts.tv_nsec * 1e-9 + retry_ms / 1000.0;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    while (!e->stop && pthread_cond_timedwait(&e->cv, &e->mu, &ts) == 0) {
    }
    int stop = e->stop;
    pthread_mutex_unlock(&e->mu);
    if (stop) break;
  }
  if (st.leading) {
    sf_err err = {0};
    if (sf__k8s_lease_release(e->k, &e->o, &st, &err) < 0)
      sf__logf("leader", "releasing the lease: %s", err.msg);
    pthread_mutex_lock(&e->mu);
    e->st = st;
    pthread_mutex_unlock(&e->mu);
  }
  return NULL;
}

int sf__k8s_elector_start(sf_k8s_elector **out, const sf_k8s_config *c, const sf_k8s_lease_opts *o,
                          sf_err *err) {
  *out = NULL;
  int lease_ms, renew_ms, retry_ms;
  lease_defaults(o, &lease_ms, &renew_ms, &retry_ms);
  if (renew_ms >= lease_ms || retry_ms >= renew_ms)
    return sf__errf(err, SF_EINVAL,
                    "leader election: need retry (%d ms) < renew deadline (%d ms) < lease (%d ms)",
                    retry_ms, renew_ms, lease_ms);
  if (!o->name || !sf__k8s_dns_subdomain(o->name) || !o->identity || !*o->identity ||
      strlen(o->identity) >= 256)
    return sf__errf(err, SF_EINVAL,
                    "leader election: a valid lease name and an identity are needed");
  sf_k8s_elector *e = sf__calloc(1, sizeof *e);
  if (!e) return sf__errf(err, SF_ENOMEM, "out of memory");
  int rc = sf__k8s_new(&e->k, c, err);
  if (rc < 0) {
    free(e);
    return rc;
  }
  snprintf(e->ns, sizeof e->ns, "%s", o->ns ? o->ns : e->k->c.ns);
  snprintf(e->name, sizeof e->name, "%s", o->name);
  snprintf(e->id, sizeof e->id, "%s", o->identity);
  e->o = *o;
  e->o.ns = e->ns;
  e->o.name = e->name;
  e->o.identity = e->id;
  pthread_mutex_init(&e->mu, NULL);
  pthread_cond_init(&e->cv, NULL);
  if (pthread_create(&e->th, NULL, elector_main, e) != 0) {
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    sf__k8s_free(e->k);
    free(e);
    return sf__errf(err, SF_EIO, "leader election: cannot start a thread");
  }
  *out = e;
  return 0;
}

int sf__k8s_elector_leading(sf_k8s_elector *e) {
  int lease_ms, renew_ms, retry_ms;
  lease_defaults(&e->o, &lease_ms, &renew_ms, &retry_ms);
  pthread_mutex_lock(&e->mu);
  int l = e->st.leading && sf__now() - e->st.renewed_at < renew_ms / 1000.0;
  pthread_mutex_unlock(&e->mu);
  return l;
}

void sf__k8s_elector_state(sf_k8s_elector *e, sf_k8s_lease_state *st) {
  pthread_mutex_lock(&e->mu);
  *st = e->st;
  pthread_mutex_unlock(&e->mu);
}

void sf__k8s_elector_stop(sf_k8s_elector *e) {
  if (!e) return;
  pthread_mutex_lock(&e->mu);
  e->stop = 1;
  pthread_cond_broadcast(&e->cv);
  pthread_mutex_unlock(&e->mu);
  pthread_join(e->th, NULL);
  pthread_mutex_destroy(&e->mu);
  pthread_cond_destroy(&e->cv);
  sf__k8s_free(e->k);
  free(e);
}
