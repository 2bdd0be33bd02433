/* Deployment steps shared by `seifer up` and the controller: analyse a model version, split a
 * plan into stage files, and the CONFIG documents of workers and the gateway. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control/control.h"
#include "onnx/onnx.h"

/* ---- files ---------------------------------------------------------------------------------- */
int sf__mkdirs(const char *d) {
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof tmp, "%s", d) >= (int)sizeof tmp) {
    errno = ENAMETOOLONG;
    return -1;
  }
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(tmp, 0700) < 0 && errno != EEXIST) return -1;
    *p = '/';
  }
  return mkdir(tmp, 0700) < 0 && errno != EEXIST ? -1 : 0;
}

int sf__write_file_atomic(const char *path, const void *data, size_t len, sf_err *err) {
  char tmp[PATH_MAX + 32];
  snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return sf__errf(err, SF_EIO, "%s: %s", tmp, strerror(errno));
  const char *p = data;
  size_t left = len;
  while (left > 0) {
    ssize_t w = write(fd, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      int e = errno;
      close(fd);
      unlink(tmp);
      return sf__errf(err, SF_EIO, "%s: %s", tmp, strerror(e));
    }
    p += w;
    left -= (size_t)w;
  }
  if (fsync(fd) < 0 || close(fd) < 0) {
    int e = errno;
    unlink(tmp);
    return sf__errf(err, SF_EIO, "%s: %s", tmp, strerror(e));
  }
  if (rename(tmp, path) < 0) {
    int e = errno;
    unlink(tmp);
    return sf__errf(err, SF_EIO, "%s: %s", path, strerror(e));
  }
  return 0;
}

int sf__self_exe(char *out, size_t cap, sf_err *err) {
  ssize_t n = readlink("/proc/self/exe", out, cap - 1);
  if (n <= 0 || (size_t)n >= cap - 1)
    return sf__errf(err, SF_EIO, "cannot find the seifer binary (/proc/self/exe)");
  out[n] = 0;
  return 0;
}

/* ---- model versions -----------------------------------------------------------------------------
 */
void sf__model_name_from_path(const char *path, char *out, size_t cap) {
  const char *b = strrchr(path, '/');
  snprintf(out, cap, "%s", b ? b + 1 : path);
  size_t n = strlen(out);
  if (n > 5 && !strcmp(out + n - 5, ".onnx")) out[n - 5] = 0;
}

int sf__dmodel_open(sf_dmodel *d, const char *path, int codec, const char *sample, sf_err *err) {
  memset(d, 0, sizeof *d);
  snprintf(d->path, sizeof d->path, "%s", path);
  d->codec = codec;
  int rc = sf_model_load(&d->m, path, err);
  if (rc < 0) goto fail;
  sf_partition_opts po = sf_partition_opts_default();
  if ((rc = sf__partition_analyze(d->m, &po, &d->pa, err)) < 0) goto fail;
  d->have_pa = 1;
  if (codec != SF_CODEC_RAW) { /* transfer sizes under the codec, measured on a sample */
    sf_tensor smp = {0};
    if (sample) {
      if ((rc = sf__tensor_load_file(sample, &smp, err)) < 0) goto fail;
      free(smp.name); /* the sample feeds the model's first input */
      smp.name =
          sf__strdup(d->pa.g->n_inputs > 0 ? d->pa.g->tensors[d->pa.g->inputs[0]].t.name : "");
      rc = smp.name ? sf__partition_measure_codecs(&d->pa, &smp, 1, 0, err)
                    : sf__errf(err, SF_ENOMEM, "out of memory");
      sf__tensor_deinit(&smp);
      if (rc < 0) {
        sf__errctx(err, rc, "sample %s", sample);
        goto fail;
      }
    } else if ((rc = sf__partition_measure_codecs(&d->pa, NULL, 0, 0, err)) < 0) {
      goto fail;
    }
    sf__partition_apply_codec(&d->pa, codec);
  }
  return 0;
fail:
  sf__dmodel_deinit(d);
  return rc;
}

void sf__dmodel_deinit(sf_dmodel *d) {
  if (d->have_pa) sf__partition_deinit(&d->pa);
  sf_model_free(d->m);
  d->m = NULL;
  d->have_pa = 0;
}

cJSON *sf__dmodel_io(const sf_dmodel *d, int outputs) {
  const sf_graph *g = d->pa.g;
  cJSON *arr = cJSON_CreateArray();
  int n = outputs ? g->n_outputs : g->n_inputs;
  for (int i = 0; arr && i < n; i++) {
    const sf_tensor *t = &g->tensors[outputs ? g->outputs[i] : g->inputs[i]].t;
    cJSON *o = cJSON_CreateObject(), *sh = cJSON_CreateArray();
    if (!o || !sh) {
      cJSON_Delete(o);
      cJSON_Delete(sh);
      cJSON_Delete(arr);
      return NULL;
    }
    cJSON_AddStringToObject(o, "name", t->name);
    cJSON_AddNumberToObject(o, "dtype", t->dtype);
    for (int k = 0; k < t->rank; k++)
      cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->dims[k]));
    cJSON_AddItemToObject(o, "shape", sh);
    cJSON_AddItemToArray(arr, o);
  }
  return arr;
}

/* ---- stages -----------------------------------------------------------------------------------
 */
int sf__deploy_split(const sf_dmodel *d, const char *model_name, const sf_cluster *cl,
                     const sf_plan *p, const char *dir, char (*digests)[65], sf_err *err) {
  int k = p->n_stages, rc = 0;
  int *pos = sf__calloc((size_t)k + 1, sizeof *pos);
  const char **names = sf__calloc((size_t)k + 1, sizeof *names);
  if (!pos || !names) {
    rc = sf__errf(err, SF_ENOMEM, "out of memory");
    goto out;
  }
  if (sf__mkdirs(dir) < 0) {
    rc = sf__errf(err, SF_EIO, "%s: %s", dir, strerror(errno));
    goto out;
  }
  for (int i = 0; i < k; i++) {
    pos[i + 1] = d->pa.costs.pos[p->stages[i].cut_to];
    names[i] = cl->nodes[p->stages[i].node].name;
  }
  if ((rc = sf__partition_write(&d->pa, model_name, k, pos, names, dir, err)) < 0) goto out;
  for (int i = 0; digests && i < k; i++) {
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/stage-%d.onnx", dir, i + 1);
    void *bytes = NULL;
    size_t len = 0;
    if ((rc = sf__read_file(path, (int64_t)2 << 30, &bytes, &len, err)) < 0) goto out;
    uint8_t dg[32];
    sf__sha256(bytes, len, dg);
    free(bytes);
    sf__hex(dg, 32, digests[i]);
  }
out:
  free(pos);
  free(names);
  return rc;
}

int sf__deploy_ship(sf_conn *c, const char *stage_path, int timeout_ms, char **info, sf_err *err) {
  void *bytes = NULL;
  size_t len = 0;
  int rc = sf__read_file(stage_path, (int64_t)2 << 30, &bytes, &len, err);
  if (rc < 0) return rc;
  rc = sf__ctl_stage(c, bytes, len, timeout_ms, info, err);
  free(bytes);
  return rc;
}

/* ---- worker configuration -----------------------------------------------------------------------
 */
char *sf__wcfg_json(const sf_wcfg *c) {
  cJSON *j = cJSON_CreateObject();
  if (!j) return NULL;
  cJSON_AddNumberToObject(j, "stage", c->stage);
  cJSON_AddNumberToObject(j, "pipeline", c->pipeline);
  cJSON_AddStringToObject(j, "next", c->next);
  cJSON_AddBoolToObject(j, "last", c->last);
  cJSON_AddStringToObject(j, "codec", sf__codec_name(c->codec));
  cJSON_AddNumberToObject(j, "rate_bytes_per_s", c->rate_bytes_per_s);
  cJSON_AddNumberToObject(j, "compute_s", c->compute_s);
  char *s = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  return s;
}

static double num(const cJSON *j, const char *k, double dflt) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, k);
  return cJSON_IsNumber(x) ? x->valuedouble : dflt;
}

static void str(const cJSON *j, const char *k, char *out, size_t cap) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, k);
  snprintf(out, cap, "%s", cJSON_IsString(x) ? x->valuestring : "");
}

int sf__wstatus_parse(const char *json, size_t len, sf_wstatus *st, sf_err *err) {
  memset(st, 0, sizeof *st);
  cJSON *j = cJSON_ParseWithLength(json, len);
  if (!cJSON_IsObject(j)) {
    cJSON_Delete(j);
    return sf__errf(err, SF_EFORMAT, "worker status: not a JSON object");
  }
  char codec[32];
  str(j, "node", st->node, sizeof st->node);
  str(j, "digest", st->digest, sizeof st->digest);
  str(j, "next", st->cfg.next, sizeof st->cfg.next);
  str(j, "codec", codec, sizeof codec);
  st->cfg.codec = sf__codec_parse(codec);
  double sg = num(j, "stage", -1), pp = num(j, "pipeline", 0);
  st->cfg.stage = sg >= 0 && sg < 1e6 ? (int)sg : -1;
  st->cfg.pipeline = pp >= 0 && pp < 4e9 ? (uint32_t)pp : 0;
  st->cfg.last = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "last"));
  st->cfg.rate_bytes_per_s = num(j, "rate_bytes_per_s", -1);
  st->cfg.compute_s = num(j, "compute_s", -1);
  st->draining = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "draining"));
  cJSON_Delete(j);
  return 0;
}

/* Numbers go through JSON: equal when they print the same (%.17g round trip). */
static int same_num(double a, double b) {
  return a == b || (a != a && b != b) ||
         (a > 0 && b > 0 && (a - b) / a < 1e-12 && (b - a) / a < 1e-12);
}

int sf__wcfg_same(const sf_wcfg *c, const sf_wstatus *st) {
  const sf_wcfg *s = &st->cfg;
  return c->stage == s->stage && c->pipeline == s->pipeline && !strcmp(c->next, s->next) &&
         !c->last == !s->last && c->codec == s->codec &&
         same_num(c->rate_bytes_per_s, s->rate_bytes_per_s) && same_num(c->compute_s, s->compute_s);
}

/* ---- gateway configuration ---------------------------------------------------------------------
 */
char *sf__gateway_config_json(const char *model, const char *version, const cJSON *inputs,
                              const cJSON *outputs, const sf_gw_pipe *pipes, int n,
                              const char *reason) {
  cJSON *cfg = cJSON_CreateObject(), *arr = cJSON_CreateArray();
  if (!cfg || !arr) {
    cJSON_Delete(cfg);
    cJSON_Delete(arr);
    return NULL;
  }
  cJSON_AddStringToObject(cfg, "model", model);
  cJSON_AddStringToObject(cfg, "version", version);
  cJSON_AddItemToObject(cfg, "inputs", inputs ? cJSON_Duplicate(inputs, 1) : cJSON_CreateArray());
  cJSON_AddItemToObject(cfg, "outputs",
                        outputs ? cJSON_Duplicate(outputs, 1) : cJSON_CreateArray());
  for (int q = 0; q < n; q++) {
    const sf_gw_pipe *p = &pipes[q];
    cJSON *pj = cJSON_CreateObject(), *sa = cJSON_CreateArray(), *sn = cJSON_CreateArray();
    cJSON_AddNumberToObject(pj, "id", p->id);
    cJSON_AddStringToObject(pj, "first", p->n_stages > 0 ? p->addrs[0] : "");
    cJSON_AddStringToObject(pj, "codec", sf__codec_name(p->codec));
    cJSON_AddNumberToObject(pj, "rate_bytes_per_s", p->rate_bytes_per_s);
    cJSON_AddNumberToObject(pj, "stages", p->n_stages);
    for (int i = 0; i < p->n_stages; i++) {
      cJSON_AddItemToArray(sa, cJSON_CreateString(p->addrs[i]));
      cJSON_AddItemToArray(sn, cJSON_CreateString(p->nodes[i]));
    }
    cJSON_AddItemToObject(pj, "stage_addrs", sa);
    cJSON_AddItemToObject(pj, "stage_nodes", sn);
    cJSON_AddItemToArray(arr, pj);
  }
  cJSON_AddItemToObject(cfg, "pipelines", arr);
  if (reason && n == 0) cJSON_AddStringToObject(cfg, "reason", reason);
  char *s = cJSON_PrintUnformatted(cfg);
  cJSON_Delete(cfg);
  return s;
}

/* ---- cluster helpers
 * ----------------------------------------------------------------------------- */
double sf__emulated_rate(const sf_cluster *cl, int from, int to) {
  if (from < 0 || to < 0 || from == to) return 0;
  return cl->bw[from * cl->n + to];
}

int sf__cluster_addresses(const void *txt, size_t len, const sf_cluster *cl, char (*addrs)[128],
                          sf_err *err) {
  cJSON *j = cJSON_ParseWithLength(txt, len);
  cJSON *nodes = j ? cJSON_GetObjectItem(j, "nodes") : NULL;
  int rc = 0;
  for (int i = 0; i < cl->n; i++) addrs[i][0] = 0;
  cJSON *e;
  cJSON_ArrayForEach(e, nodes) {
    cJSON *nm = cJSON_GetObjectItem(e, "name"), *ad = cJSON_GetObjectItem(e, "address");
    if (!cJSON_IsString(nm) || !cJSON_IsString(ad)) continue;
    for (int i = 0; i < cl->n; i++) {
      if (strcmp(cl->nodes[i].name, nm->valuestring)) continue;
      if (strlen(ad->valuestring) >= 128 || !strchr(ad->valuestring, ':'))
        rc = sf__errf(err, SF_EINVAL, "cluster: node '%s': \"address\" must be host:port",
                      nm->valuestring);
      else
        snprintf(addrs[i], 128, "%s", ad->valuestring);
    }
  }
  cJSON_Delete(j);
  return rc;
}
