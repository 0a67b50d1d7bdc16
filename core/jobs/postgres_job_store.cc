#include "core/jobs/postgres_job_store.h"

#include <libpq-fe.h>

#include <cstdlib>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "core/jobs/job_store_sql.h"

namespace lensd {
namespace {

constexpr int kSchemaVersion = 1;
// The database's clock, in Unix seconds: leases are compared with it, so servers whose clocks
// differ agree on when a lease ran out.
constexpr char kNow[] = "extract(epoch from clock_timestamp())";

constexpr const char* kSchema[] = {
    "CREATE TABLE IF NOT EXISTS lensd_schema (version INTEGER NOT NULL)",
    "CREATE SEQUENCE IF NOT EXISTS lensd_job_changes",
    R"sql(CREATE TABLE IF NOT EXISTS lensd_jobs (
  id TEXT PRIMARY KEY,
  tenant TEXT NOT NULL,
  kind TEXT NOT NULL,
  model TEXT NOT NULL,
  device TEXT NOT NULL,
  spec TEXT NOT NULL,
  state INTEGER NOT NULL,
  reason TEXT NOT NULL DEFAULT '',
  step BIGINT NOT NULL DEFAULT 0,
  num_steps BIGINT NOT NULL DEFAULT 0,
  progress TEXT NOT NULL DEFAULT '',
  checkpoint TEXT NOT NULL DEFAULT '',
  result TEXT NOT NULL DEFAULT '',
  cancel_requested BOOLEAN NOT NULL DEFAULT false,
  created DOUBLE PRECISION NOT NULL,
  started DOUBLE PRECISION NOT NULL DEFAULT 0,
  finished DOUBLE PRECISION NOT NULL DEFAULT 0,
  owner TEXT NOT NULL DEFAULT '',
  lease_until DOUBLE PRECISION NOT NULL DEFAULT 0,
  seq BIGINT NOT NULL DEFAULT 0))sql",
    "CREATE INDEX IF NOT EXISTS lensd_jobs_by_tenant ON lensd_jobs (tenant, created)",
    "CREATE INDEX IF NOT EXISTS lensd_jobs_by_state ON lensd_jobs (state, created)",
    "CREATE INDEX IF NOT EXISTS lensd_jobs_by_seq ON lensd_jobs (seq)",
    "CREATE INDEX IF NOT EXISTS lensd_jobs_by_owner ON lensd_jobs (owner, state)",
};

std::string Num(double v) { return absl::StrFormat("%.17g", v); }
std::string Num(int64_t v) { return absl::StrCat(v); }

// A text[] literal: {"a","b"} with quotes and backslashes escaped.
std::string ArrayLiteral(const std::vector<std::string>& items) {
  std::vector<std::string> quoted;
  quoted.reserve(items.size());
  for (const std::string& item : items) {
    std::string escaped;
    for (const char c : item) {
      if (c == '"' || c == '\\') escaped.push_back('\\');
      escaped.push_back(c);
    }
    quoted.push_back(absl::StrCat("\"", escaped, "\""));
  }
  return absl::StrCat("{", absl::StrJoin(quoted, ","), "}");
}

// kJobColumns each prefixed with `table.`.
std::string Qualified(const char* table) {
  std::vector<std::string> columns;
  for (absl::string_view c : absl::StrSplit(kJobColumns, ", ")) {
    columns.push_back(absl::StrCat(table, ".", c));
  }
  return absl::StrJoin(columns, ", ");
}

std::string OneLine(const char* message) {
  std::string s = message == nullptr ? "" : message;
  absl::StripTrailingAsciiWhitespace(&s);
  for (char& c : s) {
    if (c == '\n') c = ' ';
  }
  return s;
}

}  // namespace

// A PGresult, cleared on scope exit.
class PostgresJobStore::Result {
 public:
  explicit Result(PGresult* r) : r_(r) {}
  Result(Result&& other) noexcept : r_(std::exchange(other.r_, nullptr)) {}
  Result& operator=(Result&& other) noexcept {
    std::swap(r_, other.r_);
    return *this;
  }
  ~Result() { PQclear(r_); }

  int rows() const { return PQntuples(r_); }
  // Rows an UPDATE or INSERT changed.
  int changed() const {
    int n = 0;
    return absl::SimpleAtoi(PQcmdTuples(r_), &n) ? n : 0;
  }
  std::string Text(int row, int col) const { return PQgetvalue(r_, row, col); }
  int64_t Int(int row, int col) const {
    int64_t v = 0;
    return absl::SimpleAtoi(Text(row, col), &v) ? v : 0;
  }
  double Real(int row, int col) const { return std::strtod(PQgetvalue(r_, row, col), nullptr); }
  bool Bool(int row, int col) const { return Text(row, col) == "t"; }
  bool ok() const {
    const ExecStatusType s = PQresultStatus(r_);
    return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
  }
  std::string error() const { return OneLine(PQresultErrorMessage(r_)); }
  std::string sqlstate() const {
    const char* code = PQresultErrorField(r_, PG_DIAG_SQLSTATE);
    return code == nullptr ? "" : code;
  }

  JobRecord Job(int row) const {
    JobRecord j;
    j.id = Text(row, 0);
    j.tenant = Text(row, 1);
    j.kind = Text(row, 2);
    j.model = Text(row, 3);
    j.device = Text(row, 4);
    j.spec = Text(row, 5);
    j.state = static_cast<JobState>(Int(row, 6));
    j.reason = Text(row, 7);
    j.step = Int(row, 8);
    j.num_steps = Int(row, 9);
    j.progress = Text(row, 10);
    j.checkpoint = Text(row, 11);
    j.result = Text(row, 12);
    j.cancel_requested = Bool(row, 13);
    j.created = Real(row, 14);
    j.started = Real(row, 15);
    j.finished = Real(row, 16);
    j.owner = Text(row, 17);
    return j;
  }

 private:
  PGresult* r_;
};

absl::StatusOr<std::unique_ptr<JobStore>> PostgresJobStore::Open(const std::string& uri) {
  PGconn* conn = PQconnectdb(uri.c_str());
  const std::string description =
      conn == nullptr ? "PostgreSQL"
                      : absl::StrCat("PostgreSQL database ", PQdb(conn), " on ",
                                     PQhost(conn) == nullptr ? "" : PQhost(conn), ":",
                                     PQport(conn) == nullptr ? "" : PQport(conn));
  if (conn == nullptr || PQstatus(conn) != CONNECTION_OK) {
    const std::string message = conn == nullptr ? "out of memory" : OneLine(PQerrorMessage(conn));
    PQfinish(conn);
    return absl::UnavailableError(absl::StrCat("job store ", description, ": ", message));
  }
  std::unique_ptr<PostgresJobStore> store(new PostgresJobStore(conn, description));
  absl::MutexLock lock(&store->mu_);
  if (absl::Status s = store->Migrate(); !s.ok()) {
    return absl::UnavailableError(absl::StrCat("job store ", description, ": ", s.message()));
  }
  return std::unique_ptr<JobStore>(std::move(store));
}

PostgresJobStore::~PostgresJobStore() {
  absl::MutexLock lock(&mu_);
  PQfinish(conn_);
}

absl::StatusOr<PostgresJobStore::Result> PostgresJobStore::Exec(
    const std::string& sql, const std::vector<std::string>& params) const {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const std::string& p : params) values.push_back(p.c_str());
  for (int attempt = 0;; ++attempt) {
    Result r(PQexecParams(conn_, sql.c_str(), static_cast<int>(values.size()), nullptr,
                          values.data(), nullptr, nullptr, 0));
    if (r.ok()) return r;
    if (attempt == 0 && PQstatus(conn_) != CONNECTION_OK) {
      PQreset(conn_);  // the server restarted or the connection broke: once more on a new one
      if (PQstatus(conn_) == CONNECTION_OK) continue;
    }
    std::string error = r.error();
    if (error.empty()) error = OneLine(PQerrorMessage(conn_));
    const std::string message = absl::StrCat("job store ", description_, ": ", error);
    if (r.sqlstate() == "23505") return absl::AlreadyExistsError(message);
    return absl::UnavailableError(message);
  }
}

absl::Status PostgresJobStore::Migrate() {
  // Servers starting together make the tables one at a time.
  LENSD_RETURN_IF_ERROR(Exec("SELECT pg_advisory_lock(hashtext('lensd job store'))", {}).status());
  const auto unlock = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    (void)Exec("SELECT pg_advisory_unlock(hashtext('lensd job store'))", {});
  };
  for (const char* statement : kSchema) {
    absl::StatusOr<Result> r = Exec(statement, {});
    if (!r.ok()) {
      unlock();
      return r.status();
    }
  }
  absl::StatusOr<Result> version = Exec("SELECT COALESCE(MAX(version), 0) FROM lensd_schema", {});
  if (!version.ok()) {
    unlock();
    return version.status();
  }
  const int64_t found = version->Int(0, 0);
  absl::Status s = absl::OkStatus();
  if (found > kSchemaVersion) {
    s = absl::FailedPreconditionError(absl::StrCat(
        "schema version ", found, " is newer than this lensd's (", kSchemaVersion, ")"));
  } else if (found == 0) {
    s = Exec("INSERT INTO lensd_schema (version) VALUES ($1)", {Num(int64_t{kSchemaVersion})})
            .status();
  }
  unlock();
  return s;
}

absl::Status PostgresJobStore::NotHeld(const std::string& id, const std::string& owner) const {
  LENSD_ASSIGN_OR_RETURN(const Result r,
                         Exec("SELECT owner, state FROM lensd_jobs WHERE id = $1", {id}));
  if (r.rows() == 0) return absl::NotFoundError(absl::StrCat("job ", id, " not found"));
  return NotHeldError(id, owner, r.Text(0, 0), static_cast<JobState>(r.Int(0, 1)));
}

absl::Status PostgresJobStore::HolderWrite(const std::string& sql,
                                           const std::vector<std::string>& params) {
  LENSD_ASSIGN_OR_RETURN(const Result r, Exec(sql, params));
  return r.changed() == 0 ? NotHeld(params[0], params[1]) : absl::OkStatus();
}

absl::Status PostgresJobStore::Insert(const JobRecord& j) {
  absl::MutexLock lock(&mu_);
  const double created =
      j.created > 0 ? j.created : static_cast<double>(absl::ToUnixMicros(absl::Now())) / 1e6;
  absl::StatusOr<Result> r = Exec(
      absl::StrCat("INSERT INTO lensd_jobs (", kJobColumns,
                   ", seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, "
                   "$15, $16, $17, $18, nextval('lensd_job_changes'))"),
      {j.id, j.tenant, j.kind, j.model, j.device, j.spec, Num(static_cast<int64_t>(j.state)),
       j.reason, Num(j.step), Num(j.num_steps), j.progress, j.checkpoint, j.result,
       j.cancel_requested ? "true" : "false", Num(created), Num(j.started), Num(j.finished),
       j.owner});
  if (!r.ok() && absl::IsAlreadyExists(r.status())) {
    return absl::AlreadyExistsError(absl::StrCat("job ", j.id, " already exists"));
  }
  return r.status();
}

absl::StatusOr<JobRecord> PostgresJobStore::Get(const std::string& id) const {
  absl::MutexLock lock(&mu_);
  LENSD_ASSIGN_OR_RETURN(
      const Result r,
      Exec(absl::StrCat("SELECT ", kJobColumns, " FROM lensd_jobs WHERE id = $1"), {id}));
  if (r.rows() == 0) return absl::NotFoundError(absl::StrCat("job ", id, " not found"));
  return r.Job(0);
}

absl::StatusOr<std::vector<JobRecord>> PostgresJobStore::List(const JobFilter& filter) const {
  absl::MutexLock lock(&mu_);
  LENSD_ASSIGN_OR_RETURN(
      const Result r,
      Exec(absl::StrCat("SELECT ", kJobColumns,
                        " FROM lensd_jobs WHERE ($1 = '' OR tenant = $1) AND ($2::int < 0 OR "
                        "state = $2::int) ORDER BY created DESC, id DESC LIMIT $3"),
           {filter.tenant,
            Num(filter.state.has_value() ? static_cast<int64_t>(*filter.state) : int64_t{-1}),
            Num(filter.limit)}));
  std::vector<JobRecord> jobs;
  jobs.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) jobs.push_back(r.Job(i));
  return jobs;
}

absl::StatusOr<std::map<JobState, int64_t>> PostgresJobStore::CountByState() const {
  absl::MutexLock lock(&mu_);
  LENSD_ASSIGN_OR_RETURN(const Result r,
                         Exec("SELECT state, COUNT(*) FROM lensd_jobs GROUP BY state", {}));
  std::map<JobState, int64_t> counts;
  for (int i = 0; i < r.rows(); ++i) counts[static_cast<JobState>(r.Int(i, 0))] = r.Int(i, 1);
  return counts;
}

absl::Status PostgresJobStore::SetState(const std::string& id, JobState state,
                                        const std::string& reason) {
  absl::MutexLock lock(&mu_);
  LENSD_ASSIGN_OR_RETURN(
      const Result r,
      Exec(absl::StrCat("UPDATE lensd_jobs SET state = $2::int, reason = $3, "
                        "seq = nextval('lensd_job_changes'), "
                        "started = CASE WHEN $2::int = 1 THEN ",
                        kNow, " ELSE started END, finished = CASE WHEN $2::int >= 2 THEN ", kNow,
                        " ELSE finished END WHERE id = $1"),
           {id, Num(static_cast<int64_t>(state)), reason}));
  return r.changed() == 0 ? absl::NotFoundError(absl::StrCat("job ", id, " not found"))
                          : absl::OkStatus();
}

absl::Status PostgresJobStore::RequestCancel(const std::string& id) {
  absl::MutexLock lock(&mu_);
  LENSD_ASSIGN_OR_RETURN(const Result r, Exec("UPDATE lensd_jobs SET cancel_requested = true, "
                                              "seq = nextval('lensd_job_changes') WHERE id = $1",
                                              {id}));
  return r.changed() == 0 ? absl::NotFoundError(absl::StrCat("job ", id, " not found"))
                          : absl::OkStatus();
}

absl::StatusOr<bool> PostgresJobStore::CancelIfQueued(const std::string& id,
                                                      const std::string& reason) {
  absl::MutexLock lock(&mu_);
  LENSD_ASSIGN_OR_RETURN(
      const Result r,
      Exec(absl::StrCat("UPDATE lensd_jobs SET state = 4, reason = $2, finished = ", kNow,
                        ", seq = nextval('lensd_job_changes') WHERE id = $1 AND state = 0"),
           {id, reason}));
  return r.changed() > 0;
}

absl::StatusOr<std::optional<JobRecord>> PostgresJobStore::Claim(const ClaimOptions& o) {
  if (o.devices.empty()) return std::nullopt;
  absl::MutexLock lock(&mu_);
  LENSD_ASSIGN_OR_RETURN(
      const Result r,
      Exec(absl::StrCat(
               "WITH picked AS (SELECT j.id FROM lensd_jobs j WHERE (j.state = 0 OR (j.state = 1 "
               "AND j.lease_until < ",
               kNow,
               ")) AND j.device = ANY($2::text[]) AND (cardinality($3::text[]) = 0 OR j.model = "
               "ANY($3::text[])) ORDER BY (SELECT count(*) FROM lensd_jobs r WHERE r.tenant = "
               "j.tenant AND r.state = 1 AND r.lease_until >= ",
               kNow,
               "), (SELECT COALESCE(MAX(r.started), 0) FROM lensd_jobs r WHERE r.tenant = "
               "j.tenant), j.created, j.id LIMIT 1 FOR UPDATE OF j SKIP LOCKED) "
               "UPDATE lensd_jobs SET state = 1, owner = $1, lease_until = ",
               kNow, " + $4::double precision, seq = nextval('lensd_job_changes'), ",
               "started = CASE WHEN started = 0 THEN ", kNow,
               " ELSE started END FROM picked WHERE lensd_jobs.id = picked.id RETURNING ",
               Qualified("lensd_jobs")),
           {o.owner, ArrayLiteral(o.devices), ArrayLiteral(o.models),
            Num(absl::ToDoubleSeconds(o.lease))}));
  if (r.rows() == 0) return std::nullopt;
  return r.Job(0);
}

absl::StatusOr<std::vector<HeldJob>> PostgresJobStore::Renew(const std::string& owner,
                                                             absl::Duration lease) {
  absl::MutexLock lock(&mu_);
  LENSD_ASSIGN_OR_RETURN(const Result r,
                         Exec(absl::StrCat("UPDATE lensd_jobs SET lease_until = ", kNow,
                                           " + $2::double precision WHERE owner = $1 AND state = 1 "
                                           "RETURNING id, cancel_requested"),
                              {owner, Num(absl::ToDoubleSeconds(lease))}));
  std::vector<HeldJob> held;
  held.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) held.push_back({r.Text(i, 0), r.Bool(i, 1)});
  return held;
}

absl::Status PostgresJobStore::SetProgress(const std::string& id, const std::string& owner,
                                           int64_t step, const std::string& progress) {
  absl::MutexLock lock(&mu_);
  return HolderWrite(
      "UPDATE lensd_jobs SET step = $3, progress = $4, seq = nextval('lensd_job_changes') "
      "WHERE id = $1 AND owner = $2 AND state = 1",
      {id, owner, Num(step), progress});
}

absl::Status PostgresJobStore::SetCheckpoint(const std::string& id, const std::string& owner,
                                             int64_t step, const std::string& checkpoint) {
  absl::MutexLock lock(&mu_);
  return HolderWrite(
      "UPDATE lensd_jobs SET step = $3, checkpoint = $4, seq = nextval('lensd_job_changes') "
      "WHERE id = $1 AND owner = $2 AND state = 1",
      {id, owner, Num(step), checkpoint});
}

absl::Status PostgresJobStore::Finish(const std::string& id, const std::string& owner,
                                      JobState state, const std::string& reason,
                                      const std::string& result) {
  absl::MutexLock lock(&mu_);
  return HolderWrite(
      absl::StrCat("UPDATE lensd_jobs SET state = $3::int, reason = $4, result = $5, "
                   "lease_until = 0, seq = nextval('lensd_job_changes'), finished = CASE WHEN "
                   "$3::int >= 2 THEN ",
                   kNow, " ELSE finished END WHERE id = $1 AND owner = $2 AND state = 1"),
      {id, owner, Num(static_cast<int64_t>(state)), reason, result});
}

absl::StatusOr<std::vector<std::string>> PostgresJobStore::Recover(const std::string& owner) {
  absl::MutexLock lock(&mu_);
  // Other servers' running jobs are theirs (or go to whoever claims them when their leases run
  // out): only this server's go back to the queue at once.
  LENSD_RETURN_IF_ERROR(Exec("UPDATE lensd_jobs SET state = 0, lease_until = 0, "
                             "seq = nextval('lensd_job_changes') WHERE owner = $1 AND state = 1",
                             {owner})
                            .status());
  LENSD_ASSIGN_OR_RETURN(
      const Result r, Exec("SELECT id FROM lensd_jobs WHERE state = 0 ORDER BY created, id", {}));
  std::vector<std::string> ids;
  ids.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) ids.push_back(r.Text(i, 0));
  return ids;
}

absl::StatusOr<int64_t> PostgresJobStore::LastChange() const {
  absl::MutexLock lock(&mu_);
  LENSD_ASSIGN_OR_RETURN(const Result r, Exec("SELECT COALESCE(MAX(seq), 0) FROM lensd_jobs", {}));
  return r.Int(0, 0);
}

absl::StatusOr<std::vector<JobChange>> PostgresJobStore::ChangedSince(int64_t since) const {
  absl::MutexLock lock(&mu_);
  LENSD_ASSIGN_OR_RETURN(
      const Result r,
      Exec("SELECT id, seq FROM lensd_jobs WHERE seq > $1 ORDER BY seq", {Num(since)}));
  std::vector<JobChange> changes;
  changes.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) changes.push_back({r.Text(i, 0), r.Int(i, 1)});
  return changes;
}

}  // namespace lensd
