#include "core/job_store.h"

#include <sqlite3.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace lensd {
namespace {

constexpr int kSchemaVersion = 1;

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY,
  tenant TEXT NOT NULL,
  kind TEXT NOT NULL,
  model TEXT NOT NULL,
  device TEXT NOT NULL,
  spec TEXT NOT NULL,
  state INTEGER NOT NULL,
  reason TEXT NOT NULL DEFAULT '',
  step INTEGER NOT NULL DEFAULT 0,
  num_steps INTEGER NOT NULL DEFAULT 0,
  progress TEXT NOT NULL DEFAULT '',
  checkpoint TEXT NOT NULL DEFAULT '',
  result TEXT NOT NULL DEFAULT '',
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  created REAL NOT NULL,
  started REAL NOT NULL DEFAULT 0,
  finished REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_tenant ON jobs (tenant, created);
)sql";

constexpr char kColumns[] =
    "id, tenant, kind, model, device, spec, state, reason, step, num_steps, progress, checkpoint, "
    "result, cancel_requested, created, started, finished";

double Now() { return absl::ToUnixMicros(absl::Now()) / 1e6; }

// A prepared statement, finalized on scope exit.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  absl::Status status() const { return Check(rc_); }
  Statement& Bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Statement& Bind(int i, double v) {
    sqlite3_bind_double(stmt_, i, v);
    return *this;
  }
  // SQLITE_ROW or SQLITE_DONE; anything else becomes a Status.
  absl::StatusOr<bool> Step() {
    if (!status().ok()) return status();
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return Check(rc);
  }
  std::string Text(int i) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, i));
    return p == nullptr ? "" : std::string(p, static_cast<size_t>(sqlite3_column_bytes(stmt_, i)));
  }
  int64_t Int(int i) const { return sqlite3_column_int64(stmt_, i); }
  double Real(int i) const { return sqlite3_column_double(stmt_, i); }

  absl::Status Check(int rc) const {
    if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE) return absl::OkStatus();
    const std::string message = absl::StrCat("job database: ", sqlite3_errmsg(db_));
    if (rc == SQLITE_CONSTRAINT) return absl::AlreadyExistsError(message);
    if (rc == SQLITE_FULL) return absl::ResourceExhaustedError(message);
    return absl::UnavailableError(message);
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_OK;
};

JobRecord FromRow(const Statement& s) {
  JobRecord j;
  j.id = s.Text(0);
  j.tenant = s.Text(1);
  j.kind = s.Text(2);
  j.model = s.Text(3);
  j.device = s.Text(4);
  j.spec = s.Text(5);
  j.state = static_cast<JobState>(s.Int(6));
  j.reason = s.Text(7);
  j.step = s.Int(8);
  j.num_steps = s.Int(9);
  j.progress = s.Text(10);
  j.checkpoint = s.Text(11);
  j.result = s.Text(12);
  j.cancel_requested = s.Int(13) != 0;
  j.created = s.Real(14);
  j.started = s.Real(15);
  j.finished = s.Real(16);
  return j;
}

// Runs an UPDATE of one job; NOT_FOUND when no row matched.
absl::Status UpdateOne(sqlite3* db, Statement& s, const std::string& id) {
  absl::StatusOr<bool> row = s.Step();
  if (!row.ok()) return row.status();
  if (sqlite3_changes(db) == 0) return absl::NotFoundError(absl::StrCat("job ", id, " not found"));
  return absl::OkStatus();
}

}  // namespace

const char* JobStateName(JobState state) {
  switch (state) {
    case JobState::kQueued:
      return "queued";
    case JobState::kRunning:
      return "running";
    case JobState::kSucceeded:
      return "succeeded";
    case JobState::kFailed:
      return "failed";
    case JobState::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

bool IsFinal(JobState state) {
  return state == JobState::kSucceeded || state == JobState::kFailed ||
         state == JobState::kCancelled;
}

absl::StatusOr<std::unique_ptr<JobStore>> JobStore::Open(const std::string& path) {
  sqlite3* db = nullptr;
  const int rc =
      sqlite3_open_v2(path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    const std::string message = db == nullptr ? "out of memory" : sqlite3_errmsg(db);
    sqlite3_close(db);
    return absl::UnavailableError(absl::StrCat("job database ", path, ": ", message));
  }
  std::unique_ptr<JobStore> store(new JobStore(db));
  absl::MutexLock lock(&store->mu_);
  const auto in_file = [&](const absl::Status& s) {
    return absl::UnavailableError(absl::StrCat("job database ", path, ": ", s.message()));
  };
  sqlite3_busy_timeout(db, 5000);
  for (const char* pragma : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL"}) {
    if (absl::Status s = store->Exec(pragma); !s.ok()) return in_file(s);
  }
  Statement version(db, "PRAGMA user_version");
  absl::StatusOr<bool> row = version.Step();
  if (!row.ok()) return in_file(row.status());
  const int64_t found = *row ? version.Int(0) : 0;
  if (found > kSchemaVersion) {
    return in_file(absl::FailedPreconditionError(absl::StrCat(
        "schema version ", found, " is newer than this lensd's (", kSchemaVersion, ")")));
  }
  if (absl::Status s = store->Exec(kSchema); !s.ok()) return in_file(s);
  if (absl::Status s = store->Exec(absl::StrCat("PRAGMA user_version=", kSchemaVersion)); !s.ok()) {
    return in_file(s);
  }
  return store;
}

JobStore::~JobStore() {
  absl::MutexLock lock(&mu_);
  sqlite3_close(db_);
}

absl::Status JobStore::Exec(const std::string& sql) {
  char* error = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error) == SQLITE_OK) {
    return absl::OkStatus();
  }
  const std::string message = error == nullptr ? sqlite3_errmsg(db_) : error;
  sqlite3_free(error);
  return absl::UnavailableError(message);
}

absl::Status JobStore::Insert(const JobRecord& j) {
  absl::MutexLock lock(&mu_);
  Statement s(db_, absl::StrCat("INSERT INTO jobs (", kColumns,
                                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, "
                                "?14, ?15, ?16, ?17)")
                       .c_str());
  s.Bind(1, j.id).Bind(2, j.tenant).Bind(3, j.kind).Bind(4, j.model).Bind(5, j.device);
  s.Bind(6, j.spec).Bind(7, static_cast<int64_t>(j.state)).Bind(8, j.reason).Bind(9, j.step);
  s.Bind(10, j.num_steps).Bind(11, j.progress).Bind(12, j.checkpoint).Bind(13, j.result);
  s.Bind(14, static_cast<int64_t>(j.cancel_requested ? 1 : 0));
  s.Bind(15, j.created > 0 ? j.created : Now()).Bind(16, j.started).Bind(17, j.finished);
  absl::StatusOr<bool> row = s.Step();
  if (!row.ok() && absl::IsAlreadyExists(row.status())) {
    return absl::AlreadyExistsError(absl::StrCat("job ", j.id, " already exists"));
  }
  return row.status();
}

absl::StatusOr<JobRecord> JobStore::Get(const std::string& id) const {
  absl::MutexLock lock(&mu_);
  Statement s(db_, absl::StrCat("SELECT ", kColumns, " FROM jobs WHERE id = ?1").c_str());
  s.Bind(1, id);
  absl::StatusOr<bool> row = s.Step();
  if (!row.ok()) return row.status();
  if (!*row) return absl::NotFoundError(absl::StrCat("job ", id, " not found"));
  return FromRow(s);
}

absl::StatusOr<std::vector<JobRecord>> JobStore::List(const JobFilter& filter) const {
  absl::MutexLock lock(&mu_);
  Statement s(db_,
              absl::StrCat("SELECT ", kColumns,
                           " FROM jobs WHERE (?1 = '' OR tenant = ?1) AND (?2 < 0 OR state = ?2)"
                           " ORDER BY created DESC, id DESC LIMIT ?3")
                  .c_str());
  s.Bind(1, filter.tenant);
  s.Bind(2, filter.state.has_value() ? static_cast<int64_t>(*filter.state) : int64_t{-1});
  s.Bind(3, filter.limit);
  std::vector<JobRecord> jobs;
  while (true) {
    absl::StatusOr<bool> row = s.Step();
    if (!row.ok()) return row.status();
    if (!*row) return jobs;
    jobs.push_back(FromRow(s));
  }
}

absl::Status JobStore::SetState(const std::string& id, JobState state, const std::string& reason) {
  absl::MutexLock lock(&mu_);
  Statement s(db_,
              "UPDATE jobs SET state = ?2, reason = ?3, "
              "started = CASE WHEN ?2 = 1 THEN ?4 ELSE started END, "
              "finished = CASE WHEN ?2 >= 2 THEN ?4 ELSE finished END WHERE id = ?1");
  s.Bind(1, id).Bind(2, static_cast<int64_t>(state)).Bind(3, reason).Bind(4, Now());
  return UpdateOne(db_, s, id);
}

absl::Status JobStore::SetProgress(const std::string& id, int64_t step,
                                   const std::string& progress) {
  absl::MutexLock lock(&mu_);
  Statement s(db_, "UPDATE jobs SET step = ?2, progress = ?3 WHERE id = ?1");
  s.Bind(1, id).Bind(2, step).Bind(3, progress);
  return UpdateOne(db_, s, id);
}

absl::Status JobStore::SetCheckpoint(const std::string& id, int64_t step,
                                     const std::string& checkpoint) {
  absl::MutexLock lock(&mu_);
  Statement s(db_, "UPDATE jobs SET step = ?2, checkpoint = ?3 WHERE id = ?1");
  s.Bind(1, id).Bind(2, step).Bind(3, checkpoint);
  return UpdateOne(db_, s, id);
}

absl::Status JobStore::SetResult(const std::string& id, const std::string& result) {
  absl::MutexLock lock(&mu_);
  Statement s(db_, "UPDATE jobs SET result = ?2 WHERE id = ?1");
  s.Bind(1, id).Bind(2, result);
  return UpdateOne(db_, s, id);
}

absl::Status JobStore::RequestCancel(const std::string& id) {
  absl::MutexLock lock(&mu_);
  Statement s(db_, "UPDATE jobs SET cancel_requested = 1 WHERE id = ?1");
  s.Bind(1, id);
  return UpdateOne(db_, s, id);
}

absl::StatusOr<std::vector<std::string>> JobStore::Recover() {
  absl::MutexLock lock(&mu_);
  Statement requeue(db_, "UPDATE jobs SET state = 0 WHERE state = 1");
  absl::StatusOr<bool> done = requeue.Step();
  if (!done.ok()) return done.status();
  Statement s(db_, "SELECT id FROM jobs WHERE state = 0 ORDER BY created, id");
  std::vector<std::string> ids;
  while (true) {
    absl::StatusOr<bool> row = s.Step();
    if (!row.ok()) return row.status();
    if (!*row) return ids;
    ids.push_back(s.Text(0));
  }
}

}  // namespace lensd
