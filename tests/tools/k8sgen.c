/* k8sgen: print, as one JSON array, the objects the controller generates for Kubernetes (stage
 * Deployments, Leases, SeiferModel status patches) for tests/k8s_manifests.sh to validate against
 * the Kubernetes schemas and the SeiferModel CRD. Uses the same pure functions as the controller.
 */
#include <stdio.h>
#include <stdlib.h>

#include "control/k8s.h"

static int add(cJSON *all, cJSON *o, const sf_err *e) {
  if (!o) {
    fprintf(stderr, "k8sgen: %s\n", e->msg);
    return -1;
  }
  cJSON_AddItemToArray(all, o);
  return 0;
}

int main(void) {
  cJSON *all = cJSON_CreateArray();
  sf_err e = {0};
  int rc = 0;
  const char *digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
  sf_k8s_stage s = {.ns = "seifer",
                    .model = "resnet50",
                    .model_uid = "6f1c2e1a-8d4e-4b7a-9f0e-2a51c0d3b7e4",
                    .version = "3",
                    .plan_generation = 12,
                    .pipeline = 7,
                    .stage = 0,
                    .n_stages = 3,
                    .node = "edge-1",
                    .memory_bytes = 201326592,
                    .port = 7100,
                    .image = "seifer:0.1.0",
                    .secret = "seifer-cluster-secret",
                    .digest = digest,
                    .threads = 2};
  rc |= add(all, sf__k8s_stage_deployment(&s, &e), &e);
  s.stage = 1, s.node = "edge-2.lab.example", s.hostname = "edge-2", s.memory_bytes = 123456789,
  s.port = 7101;
  s.threads = 0, s.digest = NULL, s.model_uid = NULL, s.pull_policy = "Always";
  rc |= add(all, sf__k8s_stage_deployment(&s, &e), &e);
  s.stage = 2, s.node = "rpi4-c", s.hostname = NULL, s.memory_bytes = 1, s.port = 65535,
  s.version = "2024.05-rc_1";
  s.pipeline = 4294967295u, s.service_account = "custom-worker";
  rc |= add(all, sf__k8s_stage_deployment(&s, &e), &e);

  sf_k8s_lease_state ls = {.holder = "seifer-controller-7d9f8-abcde",
                           .duration_s = 15,
                           .acquire = "2026-01-02T03:04:05.123456Z",
                           .renew = "2026-01-02T03:04:07.654321Z",
                           .transitions = 3};
  cJSON_AddItemToArray(all, sf__k8s_lease_object("seifer", "seifer-controller", &ls, NULL));
  cJSON_AddItemToArray(all, sf__k8s_lease_object("seifer", "seifer-controller", &ls, "4711"));
  sf_k8s_lease_state rel = ls;
  rel.holder[0] = 0;
  rel.duration_s = 1;
  cJSON_AddItemToArray(all, sf__k8s_lease_object("seifer", "seifer-controller", &rel, "4712"));

  sf_k8s_condition cs[] = {
      {"Ready", "True", "PipelineServing", "3 stages on 3 nodes", "2026-01-02T03:04:05Z"},
      {"Progressing", "False", "RolloutDone", "version 3 serves", "2026-01-02T03:04:05Z"},
      {"Degraded", "Unknown", "NodeNotReady", "edge-4 is not ready", "2026-01-02T03:05:00Z"},
  };
  sf_k8s_plan_stage ps[] = {
      {0, "edge-1", "resnet50-edge-1", 201326592, 0.021},
      {1, "edge-2.lab.example", "resnet50-edge-2-lab-example", 123456789, 0.034},
      {2, "rpi4-c", "resnet50-rpi4-c", 1, -1}};
  sf_k8s_model_status st = {.name = "resnet50",
                            .observed_generation = 5,
                            .version = "3",
                            .plan_generation = 12,
                            .pipeline = 7,
                            .stages = ps,
                            .n_stages = 3,
                            .bottleneck_s = 0.034,
                            .predicted_throughput = 29.4,
                            .measured_throughput = 28.1,
                            .ready_nodes = 3,
                            .nodes = 4,
                            .conds = cs,
                            .n_conds = 3};
  rc |= add(all, sf__k8s_model_status(&st, &e), &e);
  sf_k8s_model_status empty = {.name = "resnet50",
                               .observed_generation = 1,
                               .bottleneck_s = -1,
                               .predicted_throughput = -1,
                               .measured_throughput = -1,
                               .conds = cs + 2,
                               .n_conds = 1};
  rc |= add(all, sf__k8s_model_status(&empty, &e), &e);

  char *out = cJSON_Print(all);
  if (!out)
    rc = -1;
  else
    puts(out);
  free(out);
  cJSON_Delete(all);
  return rc ? 1 : 0;
}
