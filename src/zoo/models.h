/* Architecture builders of the zoo (one file each). Each adds its layers to b, starting with
 * the graph input, and returns the output tensor id (or -1: the error is in b). */
#ifndef SF_ZOO_MODELS_H
#define SF_ZOO_MODELS_H

#include "zoo/builder.h"

int sf__zoo_build_resnet50(sf_zb *b);
int sf__zoo_build_mobilenetv2(sf_zb *b);
int sf__zoo_build_efficientnetb1(sf_zb *b);
int sf__zoo_build_inceptionresnetv2(sf_zb *b);
int sf__zoo_build_tiny_cnn(sf_zb *b);
int sf__zoo_build_tiny_inception(sf_zb *b);

#endif
