/* test_h5log.c: train/h5log.h: rows appended under SWMR are visible to
 * h5dump while the log is open; resume cuts rows with step > resume_step
 * (also after the writer was killed with the file open); values read back
 * equal; prompts are cut to 255 bytes at a UTF-8 boundary; a resume with
 * another batch width is refused; a log a reader holds (HDF5 file lock)
 * resumes; a write that fails (file size limit, as a full disk) names the
 * errno and leaves no half row visible (step and complete_rows); a reward
 * mixture's part columns. */
#include <hdf5.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "train/h5log.h"

enum { N = 3, E = 2 };
static char g_dir[256];

static double loss_of(int64_t step, int gen) { return 0.25 * (double)step + 100.0 * gen; }

static int write_train(ap_h5log *l, int64_t step, int gen) {
    float rewards[N];
    int32_t att[N];
    char p0[64], p1[64];
    snprintf(p0, sizeof p0, "cat %lld", (long long)step);
    snprintf(p1, sizeof p1, "dog gen %d", gen);
    const char *prompts[N] = {p0, p1, "horse"};
    for (int i = 0; i < N; i++) rewards[i] = (float)step + 0.5f * (float)i, att[i] = (int32_t)(step + i);
    ap_train_row r = {.step = step, .epoch = step / 4, .loss = loss_of(step, gen),
                      .reward_mean = 5.5, .reward_std = 0.125, .grad_norm = 2.0, .lr = 1e-3,
                      .step_time = 1.5, .samples_per_s = 2.0, .attached_mean = 1.0,
                      .rewards = rewards, .prompts = prompts, .attached = att};
    return ap_h5log_train(l, &r);
}

static int write_eval(ap_h5log *l, int64_t step) {
    float rewards[E] = {(float)step, -(float)step};
    const char *prompts[E] = {"eval a", "eval b"};
    ap_eval_row r = {.step = step, .epoch = step / 4, .reward_mean = 0.0, .reward_std = (double)step,
                     .rewards = rewards, .prompts = prompts};
    return ap_h5log_eval(l, &r);
}

/* Read a whole dataset as mtype into a malloc'ed buffer; rows and width out. */
static void *read_all(hid_t f, const char *name, hid_t mtype, size_t esize, hsize_t *rows,
                      hsize_t *width) {
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) return NULL;
    hid_t sp = H5Dget_space(ds);
    hsize_t dims[2] = {0, 1};
    H5Sget_simple_extent_dims(sp, dims, NULL);
    *rows = dims[0];
    if (width) *width = dims[1];
    void *buf = calloc(dims[0] * dims[1] + 1, esize);
    if (dims[0] && H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) free(buf), buf = NULL;
    H5Sclose(sp);
    H5Dclose(ds);
    return buf;
}

static int g_have_h5dump;
static const char *g_self;

/* Run cmd, capture its output; returns the exit status. */
static int run(const char *cmd, char *buf, size_t cap) {
    FILE *p = popen(cmd, "r");
    size_t n = p ? fread(buf, 1, cap - 1, p) : 0;
    buf[n] = 0;
    return p ? pclose(p) : -1;
}

static int count_losses(const char *buf, int rows) {
    int found = 0;
    for (int s = 1; s <= rows; s++) {
        char want[32];
        snprintf(want, sizeof want, "%g", loss_of(s, 0));
        found += strstr(buf, want) != NULL;
    }
    return found;
}

/* While the writer holds the file: a separate process opening it for SWMR
 * reading (this program with --swmr-read, as h5py swmr=True would) must see
 * every row; h5dump is tried too and what it did is printed. */
static void check_readers(const char *path, int rows, int open_for_writing) {
    char cmd[1200], buf[8192];
    if (open_for_writing) {
        snprintf(cmd, sizeof cmd, "'%s' --swmr-read '%s' 2>&1", g_self, path);
        int st = run(cmd, buf, sizeof buf);
        int found = count_losses(buf, rows);
        tu_check(st == 0 && found == rows,
                 "SWMR reader process while the writer holds the file: exit %d, %d of %d loss "
                 "values (%s)",
                 st, found, rows, buf);
    }
    if (!g_have_h5dump) return;
    snprintf(cmd, sizeof cmd, "h5dump -d /train/loss '%s' 2>&1", path);
    int st = run(cmd, buf, sizeof buf);
    int found = count_losses(buf, rows);
    char dims[64];
    snprintf(dims, sizeof dims, "( %d ) / ( H5S_UNLIMITED )", rows);
    if (open_for_writing) {
        printf("  note h5dump -d /train/loss while open for SWMR writing: exit %d, %d of %d "
               "values%s\n",
               st, found, rows,
               st ? " (HDF5 1.10 h5dump has no SWMR read mode and is refused: checked after "
                    "close instead)"
                  : "");
        return;
    }
    int ok = st == 0 && found == rows && strstr(buf, dims);
    tu_check(ok, "h5dump -d /train/loss after close: exit %d, %s, %d of %d loss values found", st,
             strstr(buf, dims) ? dims : "dims not as expected", found, rows);
    if (!ok) printf("%s\n", buf);
}

static int swmr_read_main(const char *path) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, H5P_DEFAULT);
    hid_t ds = f < 0 ? -1 : H5Dopen2(f, "/train/loss", H5P_DEFAULT);
    if (ds < 0) {
        printf("cannot open %s /train/loss for SWMR reading\n", path);
        return 1;
    }
    hid_t sp = H5Dget_space(ds);
    hsize_t n = 0;
    H5Sget_simple_extent_dims(sp, &n, NULL);
    double v[64];
    int rc = n > 64 || (n && H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0);
    for (hsize_t i = 0; !rc && i < n; i++) printf("%s%g", i ? ", " : "", v[i]);
    H5Sclose(sp);
    H5Dclose(ds);
    H5Fclose(f);
    H5close();
    return rc;
}

static void test_write_resume(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/log.h5", g_dir);
    printf("write 5 train rows + 2 eval rows, read them while open (SWMR reader, h5dump):\n");
    ap_h5log *l = NULL;
    int rc = ap_h5log_open(&l, path, N, E, -1);
    tu_check(rc == 0, "create %s (%s)", path, rc ? ap_errmsg() : "ok");
    if (rc) return;
    for (int s = 1; s <= 5 && !rc; s++) {
        rc = write_train(l, s, 0);
        if (s % 2 == 0) rc = rc || write_eval(l, s);
        if (s == 2) check_readers(path, 2, 1);
    }
    tu_check(rc == 0, "append rows (%s)", rc ? ap_errmsg() : "ok");
    check_readers(path, 5, 1);
    ap_h5log_close(l);
    check_readers(path, 5, 0);

    printf("resume at step 3 (rows 4, 5 and eval step 4 dropped), then steps 4..6 again:\n");
    rc = ap_h5log_open(&l, path, N, E, 3);
    tu_check(rc == 0, "reopen with resume_step 3 (%s)", rc ? ap_errmsg() : "ok");
    if (rc) return;
    for (int s = 4; s <= 6 && !rc; s++) {
        rc = write_train(l, s, 1);
        if (s % 2 == 0) rc = rc || write_eval(l, s);
    }
    tu_check(rc == 0, "append after resume (%s)", rc ? ap_errmsg() : "ok");
    ap_h5log_close(l);

    hid_t f = H5Fopen(path, H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, H5P_DEFAULT);
    tu_check(f >= 0, "open for reading (SWMR read)");
    if (f < 0) return;
    hsize_t rows = 0, w = 0, er = 0;
    int64_t *step = read_all(f, "/train/step", H5T_NATIVE_INT64, 8, &rows, NULL);
    double *loss = read_all(f, "/train/loss", H5T_NATIVE_DOUBLE, 8, &rows, NULL);
    float *rew = read_all(f, "/train/rewards", H5T_NATIVE_FLOAT, 4, &rows, &w);
    int32_t *att = read_all(f, "/train/attached", H5T_NATIVE_INT32, 4, &rows, &w);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, 255);
    H5Tset_strpad(st, H5T_STR_NULLPAD);
    H5Tset_cset(st, H5T_CSET_UTF8);
    char *pr = read_all(f, "/train/prompts", st, 255, &rows, &w);
    int64_t *estep = read_all(f, "/eval/step", H5T_NATIVE_INT64, 8, &er, NULL);
    double *estd = read_all(f, "/eval/reward_std", H5T_NATIVE_DOUBLE, 8, &er, NULL);
    int ok = step && loss && rew && att && pr && rows == 6 && w == N;
    int bad = 0;
    for (hsize_t i = 0; ok && i < rows; i++) {
        int64_t s = (int64_t)i + 1;
        int gen = s >= 4;
        char p1[64];
        snprintf(p1, sizeof p1, "dog gen %d", gen);
        bad += step[i] != s || loss[i] != loss_of(s, gen);
        for (int k = 0; k < N; k++)
            bad += rew[i * N + k] != (float)s + 0.5f * (float)k || att[i * N + k] != s + k;
        bad += strncmp(pr + (i * N + 1) * 255, p1, 255) != 0 ||
               strncmp(pr + (i * N + 2) * 255, "horse", 255) != 0;
    }
    tu_check(ok && bad == 0,
             "train: %llu rows (expected 6), steps 1..6, loss of run 0 for 1..3 and run 1 for 4..6, "
             "rewards/attached/prompts exact (%d mismatches)",
             (unsigned long long)rows, bad);
    tu_check(estep && estd && er == 3 && estep[0] == 2 && estep[1] == 4 && estep[2] == 6 &&
                 estd[1] == 4.0,
             "eval: %llu rows (expected 3: step 2 kept, 4 dropped and written again, 6)",
             (unsigned long long)er);
    free(step), free(loss), free(rew), free(att), free(pr), free(estep), free(estd);
    H5Tclose(st);
    H5Fclose(f);

    printf("errors:\n");
    tu_expect_error("resume with another batch width", ap_h5log_open(&l, path, N + 1, E, 6),
                    "log.h5", "/train/rewards", "3 values per row, this run 4", NULL);
    char junk[600];
    snprintf(junk, sizeof junk, "%s/junk.h5", g_dir);
    FILE *j = fopen(junk, "w");
    if (j) fputs("not hdf5", j), fclose(j);
    tu_expect_error("resume a non-HDF5 file", ap_h5log_open(&l, junk, N, E, 2), "junk.h5",
                    "cannot open the log", NULL);
}

/* A reward mixture's columns: a log written without them, resumed with
 * parts {demo, aesthetic}: the columns appear with zeros for the kept rows,
 * then hold each part's values and their means (exact: float32 values,
 * means of 3 in double); a row without part values is refused. */
static void test_parts(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/parts.h5", g_dir);
    printf("reward mixture columns (reward_<part>, reward_<part>_mean):\n");
    ap_h5log *l = NULL;
    int rc = ap_h5log_open(&l, path, N, E, -1);
    for (int s = 1; s <= 2 && !rc; s++) rc = write_train(l, s, 0);
    ap_h5log_close(l);
    const char *names[2] = {"demo", "aesthetic"};
    if (!rc) rc = ap_h5log_open_parts(&l, path, N, E, 1, 2, names);
    tu_check(rc == 0, "a log without parts resumed at step 1 with parts demo, aesthetic (%s)",
             rc ? ap_errmsg() : "ok");
    if (rc) return;
    float rewards[N] = {1, 2, 3}, parts[2 * N] = {0.5f, 0.25f, -1.0f, 3.0f, 4.0f, 8.0f};
    float erew[E] = {1, 2}, eparts[2 * E] = {0.125f, 0.375f, -2.0f, 6.0f};
    const char *prompts[N] = {"a", "b", "c"}, *eprompts[E] = {"x", "y"};
    int32_t att[N] = {1, 1, 1};
    ap_train_row r = {.step = 2, .rewards = rewards, .prompts = prompts, .attached = att,
                      .part_rewards = parts};
    ap_eval_row er = {.step = 2, .rewards = erew, .prompts = eprompts, .part_rewards = eparts};
    rc = ap_h5log_train(l, &r) || ap_h5log_eval(l, &er);
    tu_check(rc == 0, "append a train and an eval row with part values (%s)", rc ? ap_errmsg() : "ok");
    r.step = 3, r.part_rewards = NULL;
    tu_expect_error("a row without part values", ap_h5log_train(l, &r), "/train",
                    "no reward part values", NULL);
    ap_h5log_close(l);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, H5P_DEFAULT);
    if (!tu_check(f >= 0, "open %s for reading", path)) return;
    hsize_t rows = 0, w = 0, rm = 0, ea = 0, ew = 0, em = 0;
    float *d = read_all(f, "/train/reward_demo", H5T_NATIVE_FLOAT, 4, &rows, &w);
    double *dm = read_all(f, "/train/reward_aesthetic_mean", H5T_NATIVE_DOUBLE, 8, &rm, NULL);
    float *e = read_all(f, "/eval/reward_aesthetic", H5T_NATIVE_FLOAT, 4, &ea, &ew);
    double *emn = read_all(f, "/eval/reward_demo_mean", H5T_NATIVE_DOUBLE, 8, &em, NULL);
    int ok = d && dm && e && emn && rows == 2 && w == N && rm == 2 && ea == 1 && ew == E && em == 1;
    int bad = 0;
    for (int k = 0; ok && k < N; k++) bad += d[k] != 0 || d[N + k] != parts[k];
    if (ok) bad += dm[0] != 0 || dm[1] != (4.0 + 8.0 + 3.0) / 3;
    for (int k = 0; ok && k < E; k++) bad += e[k] != eparts[E + k];
    if (ok) bad += emn[0] != (0.125 + 0.375) / 2;
    tu_check(ok && bad == 0, "train: reward_demo %llu rows (zeros, then the values), "
             "reward_aesthetic_mean; eval: reward_aesthetic, reward_demo_mean (%d mismatches)",
             (unsigned long long)rows, bad);
    free(d), free(dm), free(e), free(emn);
    H5Fclose(f);
}

static void test_prompt_cut(void) {
    printf("prompts longer than 255 bytes:\n");
    char path[512];
    snprintf(path, sizeof path, "%s/cut.h5", g_dir);
    ap_h5log *l = NULL;
    int rc = ap_h5log_open(&l, path, N, 0, -1);
    char ascii[400], utf[400];
    memset(ascii, 'a', 300), ascii[300] = 0;
    memset(utf, 'b', 254); /* bytes 254, 255 are one 2-byte char: cut before it */
    memcpy(utf + 254, "\xc3\xa9", 2), memset(utf + 256, 'c', 10), utf[266] = 0;
    const char *prompts[N] = {ascii, utf, ""};
    float rw[N] = {0};
    int32_t at[N] = {0};
    ap_train_row r = {.step = 1, .rewards = rw, .prompts = prompts, .attached = at};
    rc = rc || ap_h5log_train(l, &r);
    ap_h5log_close(l);
    tu_check(rc == 0, "write a row with E = 0 (%s)", rc ? ap_errmsg() : "ok");
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, 255);
    H5Tset_strpad(st, H5T_STR_NULLPAD);
    H5Tset_cset(st, H5T_CSET_UTF8);
    hsize_t rows = 0;
    char *pr = f >= 0 ? read_all(f, "/train/prompts", st, 255, &rows, NULL) : NULL;
    tu_check(pr && strnlen(pr, 255) == 255 && strnlen(pr + 255, 255) == 254 && pr[510] == 0,
             "300 ASCII bytes -> 255; 254 + a 2-byte char -> 254 (lengths %zu, %zu)",
             pr ? strnlen(pr, 255) : 0, pr ? strnlen(pr + 255, 255) : 0);
    tu_check(f >= 0 && H5Lexists(f, "/eval/rewards", H5P_DEFAULT) == 0,
             "E = 0: no /eval/rewards dataset");
    free(pr);
    H5Tclose(st);
    if (f >= 0) H5Fclose(f);
}

/* The writer dies (SIGKILL) with the log open for SWMR writing after 4
 * rows; the resumed run must open it and keep rows with step <= 3. */
static void test_killed_writer(void) {
    printf("resume after the writer was killed with the log open:\n");
    char path[512];
    snprintf(path, sizeof path, "%s/killed.h5", g_dir);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        ap_h5log *l = NULL;
        if (ap_h5log_open(&l, path, N, E, -1)) _exit(3);
        for (int s = 1; s <= 4; s++)
            if (write_train(l, s, 0)) _exit(4);
        raise(SIGKILL);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    tu_check(WIFSIGNALED(status), "writer killed with the file open (status 0x%x)", status);
    ap_h5log *l = NULL;
    int rc = ap_h5log_open(&l, path, N, E, 3);
    tu_check(rc == 0, "resume at step 3 (%s)", rc ? ap_errmsg() : "ok");
    rc = rc || write_train(l, 4, 1);
    ap_h5log_close(l);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hsize_t rows = 0;
    double *loss = f >= 0 ? read_all(f, "/train/loss", H5T_NATIVE_DOUBLE, 8, &rows, NULL) : NULL;
    tu_check(rc == 0 && loss && rows == 4 && loss[2] == loss_of(3, 0) && loss[3] == loss_of(4, 1),
             "4 rows: 1..3 from the killed run, 4 from the resumed one (%llu rows)",
             (unsigned long long)rows);
    free(loss);
    if (f >= 0) H5Fclose(f);
}


/* A reader holds the log (its HDF5 file lock: a shared flock, as h5py's
 * reader takes): resuming must still open it, and say so. */
static void test_reader_holds_lock(void) {
    printf("resume while a reader holds the file lock:\n");
    char path[512];
    snprintf(path, sizeof path, "%s/locked.h5", g_dir);
    ap_h5log *l = NULL;
    int rc = ap_h5log_open(&l, path, N, E, -1);
    for (int s = 1; s <= 2 && !rc; s++) rc = write_train(l, s, 0);
    ap_h5log_close(l);
    l = NULL;
    int fd = open(path, O_RDONLY);
    int locked = fd >= 0 && flock(fd, LOCK_SH | LOCK_NB) == 0;
    tu_check(rc == 0 && locked, "a 2-row log, shared lock taken as a reader would");
    rc = ap_h5log_open(&l, path, N, E, 2);
    tu_check(rc == 0, "resume with the reader's lock held (%s)", rc ? ap_errmsg() : "opened");
    rc = rc || write_train(l, 3, 1);
    tu_check(rc == 0, "append a row after it (%s)", rc ? ap_errmsg() : "ok");
    ap_h5log_close(l);
    if (fd >= 0) close(fd);
}

/* The file may not grow (RLIMIT_FSIZE: writes fail with EFBIG, as with a
 * full disk): the error names the errno, and a SWMR reader sizing rows by
 * /train/step or /train/complete_rows sees only whole rows. */
static void test_write_fails(void) {
    printf("a write that fails (file size limit):\n");
    char path[512], msgfile[600];
    snprintf(path, sizeof path, "%s/full.h5", g_dir);
    snprintf(msgfile, sizeof msgfile, "%s/full.msg", g_dir);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        ap_h5log *l = NULL;
        if (ap_h5log_open(&l, path, N, E, -1) || write_train(l, 1, 0)) _exit(3);
        struct stat st;
        stat(path, &st);
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit r = {(rlim_t)st.st_size + 4096, (rlim_t)st.st_size + 4096};
        setrlimit(RLIMIT_FSIZE, &r);
        int rc = 0;
        for (int s = 2; s < 5000 && !rc; s++) rc = write_train(l, s, 0);
        FILE *m = fopen(msgfile, "w");
        if (m) fprintf(m, "%s", rc ? ap_errmsg() : "no error"), fclose(m);
        _exit(rc ? 0 : 4); /* dies with the file open, as a failed run may */
    }
    int status = 0;
    waitpid(pid, &status, 0);
    char msg[1024] = "";
    FILE *m = fopen(msgfile, "r");
    if (m) msg[fread(msg, 1, sizeof msg - 1, m)] = 0, fclose(m);
    tu_check(WIFEXITED(status) && WEXITSTATUS(status) == 0 && strstr(msg, "full.h5") &&
                 strstr(msg, "errno 27"),
             "the write failed with a message naming the file and errno 27 (EFBIG): %s", msg);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, H5P_DEFAULT);
    hsize_t rows = 0, cr = 0, ar = 0;
    int64_t *step = f >= 0 ? read_all(f, "/train/step", H5T_NATIVE_INT64, 8, &rows, NULL) : NULL;
    int64_t *done = f >= 0 ? read_all(f, "/train/complete_rows", H5T_NATIVE_INT64, 8, &cr, NULL) : NULL;
    int32_t *att = f >= 0 ? read_all(f, "/train/attached", H5T_NATIVE_INT32, 4, &ar, NULL) : NULL;
    int ok = step && done && att && cr == 1 && (hsize_t)done[0] == rows && ar >= rows && rows >= 1;
    int bad = 0;
    for (hsize_t i = 0; ok && i < rows; i++)
        for (int k = 0; k < N; k++) bad += att[i * N + k] != (int32_t)(step[i] + k);
    tu_check(ok && bad == 0,
             "SWMR reader: /train/step has %llu rows, complete_rows %lld, /train/attached %llu "
             "rows, every row up to complete_rows whole (%d mismatches)",
             (unsigned long long)rows, done ? (long long)done[0] : -1LL, (unsigned long long)ar, bad);
    free(step), free(done), free(att);
    if (f >= 0) H5Fclose(f);
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--swmr-read")) return swmr_read_main(argv[2]);
    g_self = argv[0];
    printf("test_h5log: the run's SWMR HDF5 log\n");
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    snprintf(g_dir, sizeof g_dir, "/tmp/ap_test_h5log.XXXXXX");
    if (!mkdtemp(g_dir)) return tu_skip("mkdtemp failed");
    g_have_h5dump = system("h5dump --version > /dev/null 2>&1") == 0;
    if (!g_have_h5dump)
        printf("  (h5dump not found: the read-while-writing check is skipped; "
               "tools/install-deps installs hdf5-tools)\n");
    test_write_resume();
    test_prompt_cut();
    test_parts();
    test_killed_writer();
    test_reader_holds_lock();
    test_write_fails();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) printf("warning: could not remove %s\n", g_dir);
    return tu_exit();
}
