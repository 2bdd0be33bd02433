/* codecbench FILE.npy...: ratio and encode/decode speed of every wire codec on real tensors
 * (e.g. the activations crossing a model's cuts), one table row per file and codec. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/net.h"
#include "onnx/onnx.h"
#include "util/util.h"

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: codecbench FILE.npy...\n");
    return 2;
  }
  printf("| tensor | MB | codec | ratio | encode MB/s | decode MB/s | max abs err |\n");
  printf("| --- | ---: | --- | ---: | ---: | ---: | ---: |\n");
  for (int f = 1; f < argc; f++) {
    sf_tensor t = {0};
    sf_err err = {0};
    if (sf__tensor_load_file(argv[f], &t, &err) < 0) {
      fprintf(stderr, "codecbench: %s\n", err.msg);
      return 1;
    }
    size_t nb = (size_t)sf_tensor_nbytes(&t);
    void *back = sf__aligned_alloc(nb + 64);
    const char *base = strrchr(argv[f], '/');
    base = base ? base + 1 : argv[f];
    for (int c = 0; c < SF_CODEC_COUNT; c++) {
      sf_buf b = {0};
      int reps = 0;
      double t0 = sf__now(), t_enc, t_dec;
      do {
        b.len = 0;
        if (sf__tensors_encode(&b, &t, 1, c, 0, &err) < 0) goto fail;
        reps++;
      } while (sf__now() - t0 < 0.2);
      t_enc = (sf__now() - t0) / reps;
      sf_wire_tensor w;
      if (sf__tensors_parse(b.data, b.len, &w, 1, &err) < 0) goto fail;
      reps = 0;
      t0 = sf__now();
      do {
        if (sf__tensor_decode(&w, back, nb, &err) < 0) goto fail;
        reps++;
      } while (sf__now() - t0 < 0.2);
      t_dec = (sf__now() - t0) / reps;
      double maxerr = 0;
      if (t.dtype == SF_F32)
        for (size_t i = 0; i < nb / 4; i++) {
          double d = (double)((float *)back)[i] - (double)((float *)t.data)[i];
          if (d < 0) d = -d;
          if (d > maxerr) maxerr = d;
        }
      printf("| %s | %.3f | %s | %.3f | %.0f | %.0f | %.2g |\n", base, nb / 1e6, sf__codec_name(c),
             (double)(b.len - 4) / (double)nb, nb / 1e6 / t_enc, nb / 1e6 / t_dec, maxerr);
      sf__buf_deinit(&b);
      continue;
    fail:
      fprintf(stderr, "codecbench: %s: %s: %s\n", argv[f], sf__codec_name(c), err.msg);
      return 1;
    }
    free(back);
    sf__tensor_deinit(&t);
  }
  return 0;
}
