// What the SQLite and PostgreSQL job stores share: the jobs table's columns in the order both
// read them, and the error a holder's write gets when the holder lost the job.
#ifndef LENSD_CORE_JOBS_JOB_STORE_SQL_H_
#define LENSD_CORE_JOBS_JOB_STORE_SQL_H_

#include <string>

#include "absl/status/status.h"
#include "core/jobs/job_store.h"
#include "core/status_macros.h"

namespace lensd {

// JobRecord's fields, in its order (row readers index them so).
inline constexpr char kJobColumns[] =
    "id, tenant, kind, model, device, spec, state, reason, step, num_steps, progress, checkpoint, "
    "result, cancel_requested, created, started, finished, owner";

// FAILED_PRECONDITION for a write by `owner` to a job that `holder` holds (or that is not running).
absl::Status NotHeldError(const std::string& id, const std::string& owner,
                          const std::string& holder, JobState state);

}  // namespace lensd

#endif  // LENSD_CORE_JOBS_JOB_STORE_SQL_H_
