/* sd_internal.h: helpers shared by the two SD loaders (sd.c, sd_single.c). */
#ifndef AP_PIPELINE_SD_INTERNAL_H
#define AP_PIPELINE_SD_INTERNAL_H

#include "io/json.h"
#include "pipeline/sd.h"

/* The built-in SD v1.5 config object of "unet" or "text_encoder" (the VAE's
 * is ap_vae_config_sd15); the caller frees it. */
int ap_sd15_config_json(ap_json **j, const char *which);



/* Scheduler from config_dir/scheduler/scheduler_config.json when present
 * (config_dir may be NULL), else SD v1.5's; checks that the text encoder
 * width equals the UNet's cross-attention width. what names the model. */
int ap_sd_finish(ap_sd *sd, const char *config_dir, const char *what);

#endif
