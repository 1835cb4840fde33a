/* ckpt_tamper: damage a checkpoint the way a bad disk or a careless edit
 * would, keeping its HDF5 structure intact: every dataset under /lora of
 * STATE.h5 is overwritten with zeros (shapes, attributes, the content hash
 * untouched), so the file still opens and only a content check notices.
 *   ckpt_tamper STATE.h5
 * Exits 0 after zeroing at least one dataset, 1 otherwise. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>

static int zeroed = 0;

static herr_t zero_one(hid_t g, const char *name, const H5L_info_t *info, void *file) {
    (void)info;
    hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
    if (ds < 0) return 0; /* a group */
    hid_t sp = H5Dget_space(ds);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    float *z = calloc(n > 0 ? (size_t)n : 1, sizeof *z);
    if (!z || H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, z) < 0) {
        fprintf(stderr, "ckpt_tamper: %s: cannot overwrite /lora/%s\n", (const char *)file, name);
    } else {
        zeroed++;
    }
    free(z);
    H5Sclose(sp);
    H5Dclose(ds);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: ckpt_tamper STATE.h5\n");
        return 1;
    }
    hid_t f = H5Fopen(argv[1], H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = f < 0 ? -1 : H5Gopen2(f, "lora", H5P_DEFAULT);
    if (g < 0) {
        fprintf(stderr, "ckpt_tamper: %s: no /lora group to damage\n", argv[1]);
        return 1;
    }
    H5Literate(g, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, zero_one, argv[1]);
    H5Gclose(g);
    H5Fclose(f);
    printf("ckpt_tamper: %s: %d LoRA datasets zeroed\n", argv[1], zeroed);
    return zeroed > 0 ? 0 : 1;
}
