/* The C interface between qcal_text and qcal_spm_shim, the shared object that
 * wraps libsentencepiece (see docs/sentencepiece.md for why it is a separate
 * object loaded with RTLD_DEEPBIND).
 *
 * Contract: only C types cross this boundary. The shim never hands out memory the
 * caller must free and never lets an exception escape; results reach the caller
 * through its sinks, which copy them into the caller's own objects. A sink is
 * called zero or more times before the function returns and never afterwards.
 * Processors are immutable after load: every call but destroy may run
 * concurrently on one processor. Bump QCAL_SPM_API_VERSION on any change here. */
#ifndef QCAL_WORKER_TEXT_SPM_SHIM_API_H_
#define QCAL_WORKER_TEXT_SPM_SHIM_API_H_

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QCAL_SPM_API_VERSION 1
#define QCAL_SPM_API_SYMBOL "qcal_spm_api_v1"

typedef struct QcalSpmProcessor QcalSpmProcessor;
/* Receives bytes (an error message, a decoded text, a piece). */
typedef void (*QcalSpmBytesSink)(void* ctx, const char* data, size_t size);
/* Receives token ids. */
typedef void (*QcalSpmIdsSink)(void* ctx, const int* ids, size_t count);

typedef enum QcalSpmSpecialId {
  QCAL_SPM_UNK = 0,
  QCAL_SPM_BOS = 1, /* -1 when the model has none, as for the next two */
  QCAL_SPM_EOS = 2,
  QCAL_SPM_PAD = 3,
} QcalSpmSpecialId;

typedef struct QcalSpmApi {
  int version;        /* QCAL_SPM_API_VERSION */
  size_t struct_size; /* sizeof(QcalSpmApi) as the shim was built */
  /* A processor for the serialized ModelProto `model`; null (and `error` called)
   * when it does not load. */
  QcalSpmProcessor* (*load)(const char* model, size_t size, QcalSpmBytesSink error,
                            void* ctx);
  void (*destroy)(QcalSpmProcessor* p);
  /* 1 with the ids of `text` passed to `ids`; 0 with `error` called. */
  int (*encode)(const QcalSpmProcessor* p, const char* text, size_t size,
                QcalSpmIdsSink ids, QcalSpmBytesSink error, void* ctx);
  /* 1 with the text of `ids` passed to `text`; 0 with `error` called. */
  int (*decode)(const QcalSpmProcessor* p, const int* ids, size_t count,
                QcalSpmBytesSink text, QcalSpmBytesSink error, void* ctx);
  int (*piece_size)(const QcalSpmProcessor* p);
  /* The piece of `id` (0 <= id < piece_size) passed to `piece`. */
  void (*id_to_piece)(const QcalSpmProcessor* p, int id, QcalSpmBytesSink piece,
                      void* ctx);
  /* The id of `piece`; the unknown id when the vocabulary lacks it. */
  int (*piece_to_id)(const QcalSpmProcessor* p, const char* piece, size_t size);
  int (*is_control)(const QcalSpmProcessor* p, int id);
  int (*is_unknown)(const QcalSpmProcessor* p, int id);
  int (*special_id)(const QcalSpmProcessor* p, QcalSpmSpecialId which);
} QcalSpmApi;

/* The shim's only exported symbol, named QCAL_SPM_API_SYMBOL. */
typedef const QcalSpmApi* (*QcalSpmApiFn)(void);

#ifdef __cplusplus
}
#endif

#endif /* QCAL_WORKER_TEXT_SPM_SHIM_API_H_ */
