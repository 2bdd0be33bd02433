/* seifer simulate: SEIFER's placement evaluation on random edge networks (plan/simulate.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "onnx/onnx.h"
#include "partition/partition.h"
#include "plan/plan.h"
#include "plan/simulate.h"
#include "zoo/zoo.h"

#define MAX_LIST 32

static void usage(void) {
  fprintf(stderr,
      "usage: seifer simulate [--models M1,M2,...] [--capacities MB,...] [--nodes N,...]\n"
      "                       [--trials T] [--seed S] [--algorithms A1,A2,...]\n"
      "                       [--cost-model seifer|measured] [--csv FILE] [--plot FILE.svg]\n"
      "                       [--param-bytes B] [--reference DIR]\n"
      "Reproduces SEIFER's evaluation: for every zoo model, node memory capacity and network\n"
      "size, T random networks (nodes uniform in a 150x150 square, bandwidth\n"
      "log2(1 + 283230/d^2) Mbit/s) are solved by every algorithm; prints the mean bottleneck\n"
      "(s), the optimal's improvement over kpath and the solver times, and compares with\n"
      "SEIFER's published numbers found in --reference DIR\n"
      "(default ../shared/reference/seifer-results). Defaults: models resnet50,mobilenetv2,\n"
      "efficientnetb1,inceptionresnetv2; capacities 64,128,256,512; nodes 5,10,15,20,50;\n"
      "trials 50; seed 1; algorithms optimal,kpath,joint,random; cost model seifer.\n"
      "--param-bytes: bytes per parameter in SEIFER's stage memory (default 4; 1 = their text).\n");
}

/* Split a comma list in place into at most MAX_LIST items. */
static int split_list(const char *opt, char *s, char **items) {
  int n = 0;
  for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
    if (n == MAX_LIST) {
      sf_cli_err("%s: at most %d entries", opt, MAX_LIST);
      return -1;
    }
    items[n++] = tok;
  }
  if (n == 0) sf_cli_err("%s: empty list", opt);
  return n ? n : -1;
}

static int int_list(const char *opt, char *s, long lo, long hi, int *out) {
  char *items[MAX_LIST];
  int n = split_list(opt, s, items);
  for (int i = 0; i < n; i++) {
    long v;
    if (sf_cli_int(opt, items[i], lo, hi, &v)) return -1;
    out[i] = (int)v;
  }
  return n;
}

/* ---- SEIFER's published numbers ------------------------------------------------------------ */
typedef struct ref_row {
  char model[32];
  int cap, nodes, alg; /* alg: 0 kpath (5 classes), 1 joint, 2 random */
  double v;
} ref_row;

typedef struct ref_set {
  int n, cap;
  ref_row *rows;
} ref_set;

static void ref_load(ref_set *rs, const char *dir, const char *file, int alg, int kpath) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  FILE *f = fopen(path, "r");
  if (!f) return;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    ref_row r = {.alg = alg};
    int classes = 5, got;
    char *c1 = strchr(line, ',');
    if (!c1 || c1 - line >= (long)sizeof r.model) continue;
    memcpy(r.model, line, (size_t)(c1 - line));
    r.model[c1 - line] = 0;
    if (kpath)
      got = sscanf(c1 + 1, "%d,%d,%d,%lf", &r.cap, &r.nodes, &classes, &r.v) == 4;
    else
      got = sscanf(c1 + 1, "%d,%d,%lf", &r.cap, &r.nodes, &r.v) == 3;
    if (!got || classes != 5) continue;
    if (rs->n == rs->cap) {
      int nc = rs->cap ? 2 * rs->cap : 64;
      ref_row *nr = realloc(rs->rows, sizeof *nr * (size_t)nc);
      if (!nr) break;
      rs->rows = nr;
      rs->cap = nc;
    }
    rs->rows[rs->n++] = r;
  }
  fclose(f);
}

/* Published value, NAN if absent. Model names compare case-insensitively. */
static double ref_get(const ref_set *rs, const char *model, int cap, int nodes, int alg) {
  for (int i = 0; i < rs->n; i++)
    if (rs->rows[i].alg == alg && rs->rows[i].cap == cap && rs->rows[i].nodes == nodes &&
        !strcasecmp(rs->rows[i].model, model))
      return rs->rows[i].v;
  return NAN;
}

/* ---- output ------------------------------------------------------------------------------- */
static void fmt_s(char *buf, size_t n, double v) {
  if (isnan(v))
    snprintf(buf, n, "-");
  else if (isinf(v))
    snprintf(buf, n, "inf");
  else
    snprintf(buf, n, "%.4g", v);
}

static void progress_cb(void *ctx, long done, long total) {
  const char *model = ctx;
  static int last = -1;
  int pct = (int)(100 * done / (total ? total : 1));
  if (pct == last && done != total) return;
  last = done == total ? -1 : pct;
  int w = 40, fill = (int)((long)w * done / (total ? total : 1));
  fprintf(stderr, "\r%-18s [", model);
  for (int i = 0; i < w; i++) fputc(i < fill ? '#' : '.', stderr);
  fprintf(stderr, "] %3d%% (%ld/%ld)", pct, done, total);
  if (done == total) fputc('\n', stderr);
  fflush(stderr);
}

static int find_alg(const sf_sim_grid *g, const char *name) {
  for (int a = 0; a < g->n_algs; a++)
    if (!strcmp(g->algs[a]->name, name)) return a;
  return -1;
}

static void print_table(const sf_sim_grid *g, const sf_sim_result *r) {
  int io = find_alg(g, "optimal"), ik = find_alg(g, "kpath");
  printf("%-8s %5s", "cap_MB", "nodes");
  for (int a = 0; a < g->n_algs; a++) printf(" %13s", g->algs[a]->name);
  if (io >= 0 && ik >= 0) printf(" %9s", "opt/kpath");
  for (int a = 0; a < g->n_algs; a++) printf("  t_%-8s mean/p99 ms", g->algs[a]->name);
  printf("\n");
  for (int ci = 0; ci < g->n_caps; ci++)
    for (int ni = 0; ni < g->n_nodes; ni++) {
      const sf_sim_result *row = &r[(ci * g->n_nodes + ni) * g->n_algs];
      printf("%-8d %5d", g->caps_mb[ci], g->nodes[ni]);
      for (int a = 0; a < g->n_algs; a++) {
        char b[32], cell[48];
        fmt_s(b, sizeof b, row[a].mean_bottleneck_s);
        if (row[a].feasible < row[a].trials && row[a].feasible > 0)
          snprintf(cell, sizeof cell, "%s(%d)", b, row[a].feasible);
        else
          snprintf(cell, sizeof cell, "%s", b);
        printf(" %13s", cell);
      }
      if (io >= 0 && ik >= 0) {
        double imp = sf__sim_improvement(&row[io], &row[ik], NULL);
        if (isnan(imp))
          printf(" %9s", "-");
        else
          printf(" %8.1f%%", 100 * imp);
      }
      for (int a = 0; a < g->n_algs; a++)
        printf("  %10.3f/%-10.3f", 1e3 * row[a].mean_solve_s, 1e3 * row[a].p99_solve_s);
      printf("\n");
    }
}

static void print_reference(const char *model, const sf_sim_grid *g, const sf_sim_result *r,
                            const ref_set *rs) {
  static const char *names[3] = {"kpath", "joint", "random"};
  int any = 0;
  for (int ci = 0; ci < g->n_caps && !any; ci++)
    for (int ni = 0; ni < g->n_nodes && !any; ni++)
      for (int k = 0; k < 3 && !any; k++)
        any = !isnan(ref_get(rs, model, g->caps_mb[ci], g->nodes[ni], k));
  if (!any) return;
  printf("vs SEIFER's published means (ours / theirs, s; their kpath with 5 classes):\n");
  printf("%-8s %5s", "cap_MB", "nodes");
  for (int k = 0; k < 3; k++) printf(" %21s", names[k]);
  if (find_alg(g, "optimal") >= 0) printf(" %10s", "optimal");
  printf("\n");
  for (int ci = 0; ci < g->n_caps; ci++)
    for (int ni = 0; ni < g->n_nodes; ni++) {
      const sf_sim_result *row = &r[(ci * g->n_nodes + ni) * g->n_algs];
      printf("%-8d %5d", g->caps_mb[ci], g->nodes[ni]);
      for (int k = 0; k < 3; k++) {
        int a = find_alg(g, names[k]);
        char x[32], y[32], cell[72];
        fmt_s(x, sizeof x, a >= 0 ? row[a].mean_bottleneck_s : NAN);
        fmt_s(y, sizeof y, ref_get(rs, model, g->caps_mb[ci], g->nodes[ni], k));
        snprintf(cell, sizeof cell, "%s / %s", x, y);
        printf(" %21s", cell);
      }
      int io = find_alg(g, "optimal");
      if (io >= 0) {
        char x[32];
        fmt_s(x, sizeof x, row[io].mean_bottleneck_s);
        printf(" %10s", x);
      }
      printf("\n");
    }
}

/* SVG: one row of panels per model, one panel per capacity; mean bottleneck vs nodes (evenly
 * spaced categories), one polyline per algorithm; infeasible means are left out. */
static int write_svg(const char *path, int n_models, char **models, const sf_sim_grid *g,
                     sf_sim_result **res) {
  FILE *f = fopen(path, "w");
  if (!f) {
    sf_cli_err("%s: cannot write", path);
    return -1;
  }
  static const char *colors[] = {"#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd",
                                 "#8c564b"};
  const int pw = 300, ph = 220, ml = 55, mt = 30, mb = 35, mr = 10, top = 30;
  int W = g->n_caps * pw, H = top + n_models * ph;
  fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
             "font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%%\" "
             "height=\"100%%\" fill=\"white\"/>\n", W, H);
  for (int a = 0; a < g->n_algs; a++)
    fprintf(f, "<rect x=\"%d\" y=\"10\" width=\"12\" height=\"4\" fill=\"%s\"/><text x=\"%d\" "
               "y=\"16\">%s</text>\n", 10 + 110 * a, colors[a % 6], 26 + 110 * a,
            g->algs[a]->name);
  for (int mi = 0; mi < n_models; mi++)
    for (int ci = 0; ci < g->n_caps; ci++) {
      if (!res[mi]) continue;
      int x0 = ci * pw + ml, y0 = top + mi * ph + mt, w = pw - ml - mr, h = ph - mt - mb;
      double ymax = 0;
      for (int ni = 0; ni < g->n_nodes; ni++)
        for (int a = 0; a < g->n_algs; a++) {
          double v = res[mi][(ci * g->n_nodes + ni) * g->n_algs + a].mean_bottleneck_s;
          if (isfinite(v) && v > ymax) ymax = v;
        }
      if (ymax <= 0) ymax = 1;
      ymax *= 1.05;
      fprintf(f, "<text x=\"%d\" y=\"%d\" font-weight=\"bold\">%s, %d MB</text>\n", x0,
              y0 - 8, models[mi], g->caps_mb[ci]);
      fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
                 "stroke=\"#888\"/>\n", x0, y0, w, h);
      for (int k = 0; k <= 4; k++) {
        double v = ymax * k / 4;
        int y = y0 + h - (int)(h * k / 4.0);
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.3g</text>\n", x0 - 4, y + 4,
                v);
      }
      for (int ni = 0; ni < g->n_nodes; ni++) {
        double x = x0 + (g->n_nodes > 1 ? w * (ni + 0.5) / g->n_nodes : w / 2.0);
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%d</text>\n", x,
                y0 + h + 14, g->nodes[ni]);
      }
      fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">nodes (bottleneck s)</text>\n",
              x0 + w / 2, y0 + h + 28);
      for (int a = 0; a < g->n_algs; a++) {
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"",
                colors[a % 6]);
        for (int ni = 0; ni < g->n_nodes; ni++) {
          double v = res[mi][(ci * g->n_nodes + ni) * g->n_algs + a].mean_bottleneck_s;
          if (!isfinite(v)) continue;
          fprintf(f, "%.1f,%.1f ", x0 + w * (ni + 0.5) / g->n_nodes, y0 + h - h * v / ymax);
        }
        fprintf(f, "\"/>\n");
        for (int ni = 0; ni < g->n_nodes; ni++) {
          double v = res[mi][(ci * g->n_nodes + ni) * g->n_algs + a].mean_bottleneck_s;
          if (!isfinite(v)) continue;
          fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>\n",
                  x0 + w * (ni + 0.5) / g->n_nodes, y0 + h - h * v / ymax, colors[a % 6]);
        }
      }
    }
  fprintf(f, "</svg>\n");
  if (fclose(f)) {
    sf_cli_err("%s: write failed", path);
    return -1;
  }
  return 0;
}

static int run(int argc, char **argv) {
  char models_buf[1024] = "resnet50,mobilenetv2,efficientnetb1,inceptionresnetv2";
  char algs_buf[256] = "optimal,kpath,joint,random";
  char caps_buf[512] = "64,128,256,512", nodes_buf[512] = "5,10,15,20,50";
  const char *csv = NULL, *plot = NULL, *refdir = "../shared/reference/seifer-results";
  const char *cost_model = "seifer";
  long trials = 50, seed = 1, param_bytes = 4;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v;
    char *dst = NULL;
    size_t dn = 0;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage();
      return SF_EXIT_OK;
    }
    if (!strcmp(a, "--models")) dst = models_buf, dn = sizeof models_buf;
    else if (!strcmp(a, "--algorithms")) dst = algs_buf, dn = sizeof algs_buf;
    else if (!strcmp(a, "--capacities")) dst = caps_buf, dn = sizeof caps_buf;
    else if (!strcmp(a, "--nodes")) dst = nodes_buf, dn = sizeof nodes_buf;
    if (dst) {
      if (!(v = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
      if (strlen(v) >= dn) {
        sf_cli_err("%s: value too long", a);
        return SF_EXIT_USAGE;
      }
      memcpy(dst, v, strlen(v) + 1);
    } else if (!strcmp(a, "--trials") || !strcmp(a, "--seed")) {
      if (!(v = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
      if (sf_cli_int(a, v, a[2] == 't' ? 1 : 0, a[2] == 't' ? 100000 : 0x7fffffffL,
                     a[2] == 't' ? &trials : &seed))
        return SF_EXIT_USAGE;
    } else if (!strcmp(a, "--param-bytes")) {
      if (!(v = sf_cli_value(argc, argv, &i)) || sf_cli_int(a, v, 0, 8, &param_bytes))
        return SF_EXIT_USAGE;
    } else if (!strcmp(a, "--cost-model")) {
      if (!(cost_model = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
      if (strcmp(cost_model, "seifer") && strcmp(cost_model, "measured")) {
        sf_cli_err("--cost-model: expected seifer or measured, got '%s'", cost_model);
        return SF_EXIT_USAGE;
      }
    } else if (!strcmp(a, "--csv")) {
      if (!(csv = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(a, "--plot")) {
      if (!(plot = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(a, "--reference")) {
      if (!(refdir = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else {
      sf_cli_err("simulate: unknown argument '%s'", a);
      usage();
      return SF_EXIT_USAGE;
    }
  }
  char *models[MAX_LIST], *algn[MAX_LIST];
  int caps[MAX_LIST], nodes[MAX_LIST];
  const sf_solver *algs[MAX_LIST];
  int nm = split_list("--models", models_buf, models);
  if (nm < 0) return SF_EXIT_USAGE;
  int na = split_list("--algorithms", algs_buf, algn);
  if (na < 0) return SF_EXIT_USAGE;
  int nc = int_list("--capacities", caps_buf, 1, 1 << 20, caps);
  if (nc < 0) return SF_EXIT_USAGE;
  int nn = int_list("--nodes", nodes_buf, 1, SF_PLAN_MAX_NODES, nodes);
  if (nn < 0) return SF_EXIT_USAGE;
  for (int a = 0; a < na; a++)
    if (!(algs[a] = sf__solver_find(algn[a]))) {
      sf_cli_err("--algorithms: expected optimal, kpath, joint or random, got '%s'", algn[a]);
      return SF_EXIT_USAGE;
    }
  for (int m = 0; m < nm; m++)
    if (!sf__zoo_find(models[m])) {
      sf_cli_err("--models: unknown zoo model '%s' (see seifer zoo --list)", models[m]);
      return SF_EXIT_USAGE;
    }
  int measured = !strcmp(cost_model, "measured");
  sf_sim_grid g = {.n_caps = nc, .caps_mb = caps, .n_nodes = nn, .nodes = nodes,
                   .trials = (int)trials, .seed = (uint64_t)seed, .n_algs = na, .algs = algs,
                   .flops_per_s = measured ? 1e9 : 1.0};
  ref_set rs = {0};
  ref_load(&rs, refdir, "kpath-matching.csv", 0, 1);
  ref_load(&rs, refdir, "joint-optimization.csv", 1, 0);
  ref_load(&rs, refdir, "random.csv", 2, 0);

  int rc = SF_EXIT_FAIL;
  sf_sim_result *res[MAX_LIST] = {0};
  FILE *cf = NULL;
  if (csv && !(cf = fopen(csv, "w"))) {
    sf_cli_err("%s: cannot write", csv);
    goto out;
  }
  for (int m = 0; m < nm; m++) {
    sf_err err = {0};
    sf_graph *gr = NULL;
    sf_partition pa;
    memset(&pa, 0, sizeof pa);
    sf_pcosts sc;
    memset(&sc, 0, sizeof sc);
    double t0 = sf__now();
    if (sf__zoo_build(models[m], 1, &gr, &err) < 0) {
      sf_cli_err("%s: %s", models[m], err.msg);
      goto out;
    }
    sf_model mod = {.g = gr};
    sf_partition_opts po = sf_partition_opts_default();
    int prc = sf__partition_analyze(&mod, &po, &pa, &err);
    sf__graph_free(gr);
    if (prc < 0) {
      sf_cli_err("%s: %s", models[m], err.msg);
      sf__partition_deinit(&pa);
      goto out;
    }
    if (!measured && sf__sim_seifer_costs(&pa, (int)param_bytes, &sc, &err) < 0) {
      sf_cli_err("%s: %s", models[m], err.msg);
      sf__partition_deinit(&pa);
      goto out;
    }
    const sf_pcosts *c = measured ? &pa.costs : &sc;
    printf("\nmodel %s (cost model %s): %d operators, %d candidate cuts, prepared in %.2f s\n",
           models[m], cost_model, pa.n_ops, c->n, sf__now() - t0);
    double t1 = sf__now();
    int src = sf__sim_run(c, &g, isatty(2) ? progress_cb : NULL, models[m], &res[m], &err);
    double dt = sf__now() - t1;
    sf__pcosts_deinit(&sc);
    sf__partition_deinit(&pa);
    if (src < 0) {
      sf_cli_err("%s: %s", models[m], err.msg);
      goto out;
    }
    printf("mean bottleneck (s) over %ld trials (feasible count in parentheses when not all); "
           "solved in %.2f s\n", trials, dt);
    print_table(&g, res[m]);
    if (!measured) print_reference(models[m], &g, res[m], &rs);
    if (cf) sf__sim_write_csv(cf, m == 0, models[m], res[m], nc * nn * na);
    fflush(stdout);
  }
  if (cf) {
    int e = fclose(cf);
    cf = NULL;
    if (e) {
      sf_cli_err("%s: write failed", csv);
      goto out;
    }
  }
  if (plot && write_svg(plot, nm, models, &g, res) < 0) goto out;
  rc = SF_EXIT_OK;
out:
  if (cf) fclose(cf);
  for (int m = 0; m < nm; m++) sf__sim_results_free(res[m], nc * nn * na);
  free(rs.rows);
  return rc;
}

const sf_cmd sf_cmd_simulate = {"simulate", "SEIFER's placement evaluation on random networks",
                                run, usage};
