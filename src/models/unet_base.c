/* unet_base.c: the base model of a UNet with LoRA, as a view that shares
 * every frozen weight (unet.h: ap_unet_base_view). The regulariser toward
 * the base model (kl_coeff, docs/draft.md §2) needs the UNet's prediction
 * without its LoRA; the trained model stays const and unchanged. */
#include "models/unet.h"

#include <stdlib.h>
#include <string.h>

#include "core/err.h"

static void drop_lora(ap_mha *a) { a->q.lora = a->k.lora = a->v.lora = a->o.lora = NULL; }

int ap_unet_base_view(ap_unet *view, const ap_unet *m) {
    *view = *m;
    view->tf = NULL;
    if (m->n_tf > 0) {
        view->tf = ap_malloc((size_t)m->n_tf * sizeof *view->tf, "UNet base view (transformers)");
        if (!view->tf) return AP_ERR;
        memcpy(view->tf, m->tf, (size_t)m->n_tf * sizeof *view->tf);
    }
    for (int t = 0; t < m->n_tf; t++) drop_lora(&view->tf[t].attn1), drop_lora(&view->tf[t].attn2);
    /* no LoRA: nothing to train, nothing to save */
    view->lora_rank = 0;
    memset(&view->lora, 0, sizeof view->lora);
    view->lora_grad = NULL;
    return AP_OK;
}

void ap_unet_base_view_free(ap_unet *view) {
    free(view->tf);
    memset(view, 0, sizeof *view);
}
