#include "core/jobs/sqlite_job_store.h"

#include <sqlite3.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "core/jobs/job_store_sql.h"

namespace lensd {
namespace {

constexpr int kSchemaVersion = 2;

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
  finished REAL NOT NULL DEFAULT 0,
  owner TEXT NOT NULL DEFAULT '',
  lease_until REAL NOT NULL DEFAULT 0,
  seq INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_tenant ON jobs (tenant, created);
)sql";

// Version 1 files lack the lease columns.
constexpr char kFromVersion1[] = R"sql(
ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN lease_until REAL NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
)sql";

double Now() { return static_cast<double>(absl::ToUnixMicros(absl::Now())) / 1e6; }

// A prepared statement, finalized on scope exit.
class Statement {
 public:
  Statement(sqlite3* db, const std::string& sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt_, nullptr);
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
  // Steps a statement that returns no rows; the rows it changed.
  absl::StatusOr<int> Run() {
    absl::StatusOr<bool> row = Step();
    if (!row.ok()) return row.status();
    return sqlite3_changes(db_);
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
  j.owner = s.Text(17);
  return j;
}

absl::StatusOr<std::vector<JobRecord>> Rows(Statement& s) {
  std::vector<JobRecord> jobs;
  while (true) {
    absl::StatusOr<bool> row = s.Step();
    if (!row.ok()) return row.status();
    if (!*row) return jobs;
    jobs.push_back(FromRow(s));
  }
}

// "?n, ?n+1, ..." for `count` parameters from `first`.
std::string Placeholders(int first, size_t count) {
  std::vector<std::string> marks;
  marks.reserve(count);
  for (size_t i = 0; i < count; ++i)
    marks.push_back(absl::StrCat("?", first + static_cast<int>(i)));
  return absl::StrJoin(marks, ", ");
}

}  // namespace

absl::StatusOr<std::unique_ptr<JobStore>> SqliteJobStore::Open(const std::string& path) {
  sqlite3* db = nullptr;
  const int rc =
      sqlite3_open_v2(path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    const std::string message = db == nullptr ? "out of memory" : sqlite3_errmsg(db);
    sqlite3_close(db);
    return absl::UnavailableError(absl::StrCat("job database ", path, ": ", message));
  }
  std::unique_ptr<SqliteJobStore> store(new SqliteJobStore(db, path));
  absl::MutexLock lock(&store->mu_);
  if (absl::Status s = store->Migrate(); !s.ok()) {
    return absl::UnavailableError(absl::StrCat("job database ", path, ": ", s.message()));
  }
  return std::unique_ptr<JobStore>(std::move(store));
}

absl::Status SqliteJobStore::Migrate() {
  sqlite3_busy_timeout(db_, 5000);
  for (const char* pragma : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL"}) {
    LENSD_RETURN_IF_ERROR(Exec(pragma));
  }
  Statement version(db_, "PRAGMA user_version");
  absl::StatusOr<bool> row = version.Step();
  if (!row.ok()) return row.status();
  const int64_t found = *row ? version.Int(0) : 0;
  if (found > kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "schema version ", found, " is newer than this lensd's (", kSchemaVersion, ")"));
  }
  LENSD_RETURN_IF_ERROR(Exec(kSchema));
  if (found == 1) LENSD_RETURN_IF_ERROR(Exec(kFromVersion1));
  LENSD_RETURN_IF_ERROR(Exec(absl::StrCat("PRAGMA user_version=", kSchemaVersion)));
  Statement last(db_, "SELECT COALESCE(MAX(seq), 0) FROM jobs");
  row = last.Step();
  if (!row.ok()) return row.status();
  last_change_ = last.Int(0);
  return absl::OkStatus();
}

SqliteJobStore::~SqliteJobStore() {
  absl::MutexLock lock(&mu_);
  sqlite3_close(db_);
}

absl::Status SqliteJobStore::Exec(const std::string& sql) {
  char* error = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error) == SQLITE_OK) {
    return absl::OkStatus();
  }
  const std::string message = error == nullptr ? sqlite3_errmsg(db_) : error;
  sqlite3_free(error);
  return absl::UnavailableError(message);
}

absl::Status SqliteJobStore::NotHeld(const std::string& id, const std::string& owner) const {
  Statement s(db_, "SELECT owner, state FROM jobs WHERE id = ?1");
  s.Bind(1, id);
  absl::StatusOr<bool> row = s.Step();
  if (!row.ok()) return row.status();
  if (!*row) return absl::NotFoundError(absl::StrCat("job ", id, " not found"));
  return NotHeldError(id, owner, s.Text(0), static_cast<JobState>(s.Int(1)));
}

absl::Status SqliteJobStore::Insert(const JobRecord& j) {
  absl::MutexLock lock(&mu_);
  Statement s(db_, absl::StrCat("INSERT INTO jobs (", kJobColumns, ", seq) VALUES (",
                                Placeholders(1, 19), ")"));
  s.Bind(1, j.id).Bind(2, j.tenant).Bind(3, j.kind).Bind(4, j.model).Bind(5, j.device);
  s.Bind(6, j.spec).Bind(7, static_cast<int64_t>(j.state)).Bind(8, j.reason).Bind(9, j.step);
  s.Bind(10, j.num_steps).Bind(11, j.progress).Bind(12, j.checkpoint).Bind(13, j.result);
  s.Bind(14, static_cast<int64_t>(j.cancel_requested ? 1 : 0));
  s.Bind(15, j.created > 0 ? j.created : Now()).Bind(16, j.started).Bind(17, j.finished);
  s.Bind(18, j.owner).Bind(19, NextChange());
  absl::StatusOr<bool> row = s.Step();
  if (!row.ok() && absl::IsAlreadyExists(row.status())) {
    return absl::AlreadyExistsError(absl::StrCat("job ", j.id, " already exists"));
  }
  return row.status();
}

absl::StatusOr<JobRecord> SqliteJobStore::Get(const std::string& id) const {
  absl::MutexLock lock(&mu_);
  Statement s(db_, absl::StrCat("SELECT ", kJobColumns, " FROM jobs WHERE id = ?1"));
  s.Bind(1, id);
  absl::StatusOr<bool> row = s.Step();
  if (!row.ok()) return row.status();
  if (!*row) return absl::NotFoundError(absl::StrCat("job ", id, " not found"));
  return FromRow(s);
}

absl::StatusOr<std::vector<JobRecord>> SqliteJobStore::List(const JobFilter& filter) const {
  absl::MutexLock lock(&mu_);
  Statement s(db_, absl::StrCat("SELECT ", kJobColumns,
                                " FROM jobs WHERE (?1 = '' OR tenant = ?1) AND (?2 < 0 OR state = "
                                "?2) ORDER BY created DESC, id DESC LIMIT ?3"));
  s.Bind(1, filter.tenant);
  s.Bind(2, filter.state.has_value() ? static_cast<int64_t>(*filter.state) : int64_t{-1});
  s.Bind(3, filter.limit);
  return Rows(s);
}

absl::StatusOr<std::map<JobState, int64_t>> SqliteJobStore::CountByState() const {
  absl::MutexLock lock(&mu_);
  Statement s(db_, "SELECT state, COUNT(*) FROM jobs GROUP BY state");
  std::map<JobState, int64_t> counts;
  while (true) {
    absl::StatusOr<bool> row = s.Step();
    if (!row.ok()) return row.status();
    if (!*row) return counts;
    counts[static_cast<JobState>(s.Int(0))] = s.Int(1);
  }
}

absl::Status SqliteJobStore::SetState(const std::string& id, JobState state,
                                      const std::string& reason) {
  absl::MutexLock lock(&mu_);
  Statement s(db_,
              "UPDATE jobs SET state = ?2, reason = ?3, seq = ?5, "
              "started = CASE WHEN ?2 = 1 THEN ?4 ELSE started END, "
              "finished = CASE WHEN ?2 >= 2 THEN ?4 ELSE finished END WHERE id = ?1");
  s.Bind(1, id).Bind(2, static_cast<int64_t>(state)).Bind(3, reason).Bind(4, Now());
  s.Bind(5, NextChange());
  LENSD_ASSIGN_OR_RETURN(const int changed, s.Run());
  return changed == 0 ? absl::NotFoundError(absl::StrCat("job ", id, " not found"))
                      : absl::OkStatus();
}

absl::Status SqliteJobStore::RequestCancel(const std::string& id) {
  absl::MutexLock lock(&mu_);
  Statement s(db_, "UPDATE jobs SET cancel_requested = 1, seq = ?2 WHERE id = ?1");
  s.Bind(1, id).Bind(2, NextChange());
  LENSD_ASSIGN_OR_RETURN(const int changed, s.Run());
  return changed == 0 ? absl::NotFoundError(absl::StrCat("job ", id, " not found"))
                      : absl::OkStatus();
}

absl::StatusOr<bool> SqliteJobStore::CancelIfQueued(const std::string& id,
                                                    const std::string& reason) {
  absl::MutexLock lock(&mu_);
  Statement s(db_,
              "UPDATE jobs SET state = 4, reason = ?2, finished = ?3, seq = ?4 "
              "WHERE id = ?1 AND state = 0");
  s.Bind(1, id).Bind(2, reason).Bind(3, Now()).Bind(4, NextChange());
  LENSD_ASSIGN_OR_RETURN(const int changed, s.Run());
  return changed > 0;
}

absl::StatusOr<std::optional<JobRecord>> SqliteJobStore::Claim(const ClaimOptions& o) {
  if (o.devices.empty()) return std::nullopt;
  absl::MutexLock lock(&mu_);
  const double now = Now();
  const int models_from = 2 + static_cast<int>(o.devices.size());
  std::string sql = absl::StrCat(
      "SELECT ", kJobColumns,
      " FROM jobs j WHERE (j.state = 0 OR (j.state = 1 AND j.lease_until < ?1)) AND j.device IN (",
      Placeholders(2, o.devices.size()), ")");
  if (!o.models.empty()) {
    absl::StrAppend(&sql, " AND j.model IN (", Placeholders(models_from, o.models.size()), ")");
  }
  // Tenants with fewer running jobs first, then the one served least recently (round robin),
  // then the oldest job.
  absl::StrAppend(&sql,
                  " ORDER BY (SELECT COUNT(*) FROM jobs r WHERE r.tenant = j.tenant AND "
                  "r.state = 1 AND r.lease_until >= ?1), (SELECT COALESCE(MAX(r.started), 0) "
                  "FROM jobs r WHERE r.tenant = j.tenant), j.created, j.id LIMIT 1");
  Statement pick(db_, sql);
  pick.Bind(1, now);
  for (size_t i = 0; i < o.devices.size(); ++i) pick.Bind(2 + static_cast<int>(i), o.devices[i]);
  for (size_t i = 0; i < o.models.size(); ++i) {
    pick.Bind(models_from + static_cast<int>(i), o.models[i]);
  }
  absl::StatusOr<bool> row = pick.Step();
  if (!row.ok()) return row.status();
  if (!*row) return std::nullopt;
  JobRecord job = FromRow(pick);
  Statement take(db_,
                 "UPDATE jobs SET state = 1, owner = ?2, lease_until = ?3, seq = ?4, "
                 "started = CASE WHEN started = 0 THEN ?5 ELSE started END WHERE id = ?1");
  take.Bind(1, job.id).Bind(2, o.owner).Bind(3, now + absl::ToDoubleSeconds(o.lease));
  take.Bind(4, NextChange()).Bind(5, now);
  LENSD_RETURN_IF_ERROR(take.Run().status());
  job.state = JobState::kRunning;
  job.owner = o.owner;
  if (job.started == 0) job.started = now;
  return job;
}

absl::StatusOr<std::vector<HeldJob>> SqliteJobStore::Renew(const std::string& owner,
                                                           absl::Duration lease) {
  absl::MutexLock lock(&mu_);
  Statement s(db_,
              "UPDATE jobs SET lease_until = ?2 WHERE owner = ?1 AND state = 1 "
              "RETURNING id, cancel_requested");
  s.Bind(1, owner).Bind(2, Now() + absl::ToDoubleSeconds(lease));
  std::vector<HeldJob> held;
  while (true) {
    absl::StatusOr<bool> row = s.Step();
    if (!row.ok()) return row.status();
    if (!*row) return held;
    held.push_back({s.Text(0), s.Int(1) != 0});
  }
}

absl::Status SqliteJobStore::SetProgress(const std::string& id, const std::string& owner,
                                         int64_t step, const std::string& progress) {
  absl::MutexLock lock(&mu_);
  Statement s(db_,
              "UPDATE jobs SET step = ?3, progress = ?4, seq = ?5 "
              "WHERE id = ?1 AND owner = ?2 AND state = 1");
  s.Bind(1, id).Bind(2, owner).Bind(3, step).Bind(4, progress).Bind(5, NextChange());
  LENSD_ASSIGN_OR_RETURN(const int changed, s.Run());
  return changed == 0 ? NotHeld(id, owner) : absl::OkStatus();
}

absl::Status SqliteJobStore::SetCheckpoint(const std::string& id, const std::string& owner,
                                           int64_t step, const std::string& checkpoint) {
  absl::MutexLock lock(&mu_);
  Statement s(db_,
              "UPDATE jobs SET step = ?3, checkpoint = ?4, seq = ?5 "
              "WHERE id = ?1 AND owner = ?2 AND state = 1");
  s.Bind(1, id).Bind(2, owner).Bind(3, step).Bind(4, checkpoint).Bind(5, NextChange());
  LENSD_ASSIGN_OR_RETURN(const int changed, s.Run());
  return changed == 0 ? NotHeld(id, owner) : absl::OkStatus();
}

absl::Status SqliteJobStore::Finish(const std::string& id, const std::string& owner, JobState state,
                                    const std::string& reason, const std::string& result) {
  absl::MutexLock lock(&mu_);
  Statement s(db_,
              "UPDATE jobs SET state = ?3, reason = ?4, result = ?5, lease_until = 0, seq = ?6, "
              "finished = CASE WHEN ?3 >= 2 THEN ?7 ELSE finished END "
              "WHERE id = ?1 AND owner = ?2 AND state = 1");
  s.Bind(1, id).Bind(2, owner).Bind(3, static_cast<int64_t>(state)).Bind(4, reason);
  s.Bind(5, result).Bind(6, NextChange()).Bind(7, Now());
  LENSD_ASSIGN_OR_RETURN(const int changed, s.Run());
  return changed == 0 ? NotHeld(id, owner) : absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> SqliteJobStore::Recover(const std::string& owner) {
  absl::MutexLock lock(&mu_);
  // Only this server uses the file: whoever held a running job, it stopped with the server.
  Statement requeue(db_, "UPDATE jobs SET state = 0, lease_until = 0, seq = ?1 WHERE state = 1");
  requeue.Bind(1, NextChange());
  LENSD_RETURN_IF_ERROR(requeue.Run().status());
  Statement s(db_, "SELECT id FROM jobs WHERE state = 0 ORDER BY created, id");
  std::vector<std::string> ids;
  while (true) {
    absl::StatusOr<bool> row = s.Step();
    if (!row.ok()) return row.status();
    if (!*row) return ids;
    ids.push_back(s.Text(0));
  }
}

absl::StatusOr<int64_t> SqliteJobStore::LastChange() const {
  absl::MutexLock lock(&mu_);
  return last_change_;
}

absl::StatusOr<std::vector<JobChange>> SqliteJobStore::ChangedSince(int64_t since) const {
  absl::MutexLock lock(&mu_);
  Statement s(db_, "SELECT id, seq FROM jobs WHERE seq > ?1 ORDER BY seq");
  s.Bind(1, since);
  std::vector<JobChange> changes;
  while (true) {
    absl::StatusOr<bool> row = s.Step();
    if (!row.ok()) return row.status();
    if (!*row) return changes;
    changes.push_back({s.Text(0), s.Int(1)});
  }
}

}  // namespace lensd
