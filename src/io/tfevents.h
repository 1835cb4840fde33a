/* tfevents.h: TensorBoard event files, written without TensorFlow
 * (docs/logging.md §2).
 *
 * A file is a sequence of records (TFRecord framing):
 *   uint64 length (little endian), uint32 masked_crc32c(length bytes),
 *   length bytes of data, uint32 masked_crc32c(data)
 * with masked_crc(c) = ((c >> 15) | (c << 17)) + 0xa282ead8. Each record's
 * data is a protobuf `tensorflow.Event` encoded by hand: wall_time (1,
 * double), step (2, int64), file_version (3, "brain.Event:2" in the first
 * record), summary (5) holding one Summary.Value: a scalar (simple_value), a
 * PNG image (Summary.Image) or a text (a DT_STRING tensor with the "text"
 * plugin's metadata), or session_log (6, START: a resumed run).
 *
 * Each record goes to the file in one write(2), so a reader (TensorBoard,
 * live) sees whole records; a writer killed in the middle leaves at most a
 * truncated last record, which readers skip and ap_tfevents_cut drops.
 */
#ifndef AP_IO_TFEVENTS_H
#define AP_IO_TFEVENTS_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): crc of n more bytes
 * after a running value (start with 0), as in RFC 3720 and TFRecord. */
uint32_t ap_crc32c(uint32_t crc, const void *data, size_t n);
/* TFRecord's masking of a CRC stored next to the data it covers. */
uint32_t ap_crc32c_mask(uint32_t crc);

typedef struct ap_tfevents ap_tfevents;

/* Create dir (and parents) and a new event file in it named
 * "events.out.tfevents.<unix seconds, 10 digits>.<first_step, 12 digits>.<host>.<pid>",
 * so files sort in the order runs wrote them. The first record is the
 * file_version event; resumed (non-zero) adds a SessionLog START at
 * first_step (TensorBoard's signal that the run restarted there). */
int ap_tfevents_open(ap_tfevents **out, const char *dir, int64_t first_step, int resumed);
/* fsync and close (NULL is fine). */
void ap_tfevents_close(ap_tfevents *w);
/* The file's path. */
const char *ap_tfevents_path(const ap_tfevents *w);

/* One scalar (stored as float32, TensorBoard's simple_value). */
int ap_tfevents_scalar(ap_tfevents *w, const char *tag, int64_t step, float value);
/* One PNG-encoded image (png: len bytes) of H x W RGB pixels; description
 * (may be NULL) is shown under the image. */
int ap_tfevents_image(ap_tfevents *w, const char *tag, int64_t step, const void *png, size_t len,
                      int H, int W, const char *description);
/* One text (Markdown, shown by TensorBoard's text tab). */
int ap_tfevents_text(ap_tfevents *w, const char *tag, int64_t step, const char *text);

/* Resume: rewrite every event file of dir (atomically, io/atomic.h) to the
 * events keep(step, tag, user) accepts (tag "" for events without a
 * summary: file_version, session_log); a truncated or corrupt tail is
 * dropped; a file left with no event is removed. Files left unchanged are
 * not rewritten. A missing dir is fine. */
int ap_tfevents_cut(const char *dir, int (*keep)(int64_t step, const char *tag, void *user),
                    void *user);

#endif
