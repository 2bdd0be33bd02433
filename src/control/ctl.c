/* The controller's side of the worker and gateway links. */
#include <stdlib.h>
#include <string.h>

#include "control/control.h"

int sf__ctl_connect(sf_conn **out, const char *addr, const sf_secret *s, sf_err *err) {
  return sf__ctl_connect_timeout(out, addr, s, 5000, err);
}

int sf__ctl_connect_timeout(sf_conn **out, const char *addr, const sf_secret *s, int timeout_ms,
                            sf_err *err) {
  *out = NULL;
  int rc = sf__conn_connect(out, addr, timeout_ms, err);
  if (rc == 0) rc = sf__auth_client(*out, s, "controller", timeout_ms, err);
  if (rc < 0) {
    sf__conn_free(*out);
    *out = NULL;
    return sf__errctx(err, rc, "%s", addr);
  }
  return 0;
}

/* Wait for a frame of type want (or ERROR), skipping heartbeats. */
static int wait_reply(sf_conn *c, int want, int timeout_ms, char **reply, sf_err *err) {
  sf_frame f = {0};
  double end = sf__now() + timeout_ms / 1000.0;
  int rc;
  for (;;) {
    int left = (int)((end - sf__now()) * 1000);
    if (left <= 0) {
      rc = sf__errf(err, SF_EIO, "%s: no answer within %d ms", sf__conn_peer(c), timeout_ms);
      break;
    }
    if ((rc = sf__frame_recv(c, &f, (uint64_t)1 << 24, left, err)) < 0) break;
    if (f.hdr.type == SF_FR_HEARTBEAT && want != SF_FR_HEARTBEAT) continue;
    if (f.hdr.type == SF_FR_ERROR) {
      rc = sf__errf(err, SF_EINVAL, "%.*s", (int)(f.hdr.payload_len < 900 ? f.hdr.payload_len : 900),
                    (const char *)f.payload);
      break;
    }
    if (f.hdr.type != want) {
      rc = sf__errf(err, SF_EFORMAT, "%s: expected %s, got %s", sf__conn_peer(c),
                    sf__frame_type_name(want), sf__frame_type_name(f.hdr.type));
      break;
    }
    if (reply) {
      *reply = sf__malloc(f.hdr.payload_len + 1);
      if (!*reply) {
        rc = sf__errf(err, SF_ENOMEM, "out of memory");
        break;
      }
      memcpy(*reply, f.payload, f.hdr.payload_len);
      (*reply)[f.hdr.payload_len] = 0;
    }
    rc = 0;
    break;
  }
  sf__frame_deinit(&f);
  return rc;
}

int sf__ctl_stage(sf_conn *c, const void *model, size_t len, int timeout_ms, char **info, sf_err *err) {
  uint8_t d[32];
  sf__sha256(model, len, d);
  sf_frame_hdr h = {.type = SF_FR_STAGE};
  int rc = sf__frame_send(c, &h, d, 32, err);
  if (rc < 0) return rc;
  sf_err e2 = {0};
  rc = wait_reply(c, SF_FR_STAGE_OK, timeout_ms, info, &e2);
  if (rc == 0) return 0;
  if (!strstr(e2.msg, "not in cache")) {
    if (err) *err = e2;
    return rc;
  }
  if ((rc = sf__frame_send2(c, &h, d, 32, model, len, err)) < 0) return rc;
  return wait_reply(c, SF_FR_STAGE_OK, timeout_ms, info, err);
}

int sf__ctl_config(sf_conn *c, const char *json, int timeout_ms, char **reply, sf_err *err) {
  sf_frame_hdr h = {.type = SF_FR_CONFIG};
  int rc = sf__frame_send(c, &h, json, strlen(json), err);
  if (rc < 0) return rc;
  return wait_reply(c, SF_FR_CONFIG, timeout_ms, reply, err);
}

int sf__ctl_status(sf_conn *c, int timeout_ms, char **reply, sf_err *err) {
  sf_frame_hdr h = {.type = SF_FR_HEARTBEAT};
  int rc = sf__frame_send(c, &h, NULL, 0, err);
  if (rc < 0) return rc;
  return wait_reply(c, SF_FR_HEARTBEAT, timeout_ms, reply, err);
}

int sf__ctl_compute_probe(sf_conn *c, double iters, double seconds, int timeout_ms,
                          sf_compute_probe *out, sf_err *err) {
  char req[160];
  snprintf(req, sizeof req, "{\"compute\":{\"iters\":%.0f,\"seconds\":%.3f,\"warmup\":1}}", iters, seconds);
  sf_frame_hdr h = {.type = SF_FR_PROBE};
  int rc = sf__frame_send(c, &h, req, strlen(req), err);
  char *reply = NULL;
  if (rc == 0) rc = wait_reply(c, SF_FR_PROBE, timeout_ms, &reply, err);
  if (rc < 0) return rc;
  cJSON *j = cJSON_Parse(reply), *r = cJSON_GetObjectItemCaseSensitive(j, "compute");
  const cJSON *runs = cJSON_GetObjectItemCaseSensitive(r, "runs"),
              *mean = cJSON_GetObjectItemCaseSensitive(r, "mean_s"),
              *med = cJSON_GetObjectItemCaseSensitive(r, "median_s"),
              *dg = cJSON_GetObjectItemCaseSensitive(r, "digest");
  memset(out, 0, sizeof *out);
  if (!cJSON_IsNumber(runs) || runs->valuedouble < 1 || !cJSON_IsNumber(mean) ||
      !(mean->valuedouble > 0) || !(mean->valuedouble < 1e6) || !cJSON_IsNumber(med) ||
      !(med->valuedouble > 0) || !cJSON_IsString(dg) || strlen(dg->valuestring) != 64)
    rc = sf__errf(err, SF_EFORMAT, "%s: malformed compute probe answer", sf__conn_peer(c));
  else {
    out->runs = (int)runs->valuedouble;
    out->mean_s = mean->valuedouble;
    out->median_s = med->valuedouble;
    snprintf(out->digest, sizeof out->digest, "%s", dg->valuestring);
  }
  cJSON_Delete(j);
  free(reply);
  return rc;
}
