// A decode's cells as packed arrays (DecodeRequest.packed → DecodeResponse.grid): one Tensor per
// field instead of a message per cell and per top token.
#ifndef LENSD_SERVER_DECODE_GRID_H_
#define LENSD_SERVER_DECODE_GRID_H_

#include "core/lens_types.h"
#include "core/model_registry.h"
#include "lensd/v1/lens.pb.h"

namespace lensd::server {

// `scale` multiplies the statistics in nats (entropy, divergences, cross-entropy): 1, or nats to
// bits per byte.
void FillDecodeGrid(const DecodeOutput& output, const LoadedModel& model, double scale,
                    v1::DecodeGrid* grid);

}  // namespace lensd::server

#endif  // LENSD_SERVER_DECODE_GRID_H_
