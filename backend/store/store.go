// Package store keeps Tandem's domain in SQLite through gorm: it opens the
// database with the pragmas the admin server relies on, applies the embedded
// goose migrations, and offers queries that return domain types. Driver
// errors become domain sentinels (ErrNotFound, ErrConflict, *InvalidError).
//
// Every write runs in one transaction together with its audit entry and, when
// a server's effective session config changes, its new revision. A Store is
// safe for concurrent use; write transactions are serialised in-process and
// take SQLite's write lock at BEGIN (immediate), so they never fail with
// "database is locked".
package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-sqlite3"
	"github.com/pressly/goose/v3"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	gormlogger "gorm.io/gorm/logger"

	"tandem/backend/domain"
	"tandem/migrations"
)

// ErrSchemaTooNew means the database was migrated by a newer tandem binary.
var ErrSchemaTooNew = errors.New("store: database schema is newer than this binary")

var errNoRows = sql.ErrNoRows

// Store is the admin server's database.
type Store struct {
	db     *gorm.DB
	sqlDB  *sql.DB
	logger *slog.Logger
	now    func() time.Time

	// wmu serialises this process's write transactions; SQLite allows one
	// writer anyway, and waiting on a Go mutex is fairer and cheaper than
	// the busy handler's sleeps.
	wmu *sync.Mutex
	// inTx is true for the Store handed to an InTx callback: its methods
	// run inside the caller's transaction instead of opening their own.
	inTx bool
}

// Options tune Open; the zero value is the default.
type Options struct {
	// Synchronous is SQLite's synchronous setting: "FULL" (default: an
	// acknowledged write survives a power loss, the WAL is synced at every
	// commit) or "NORMAL" (survives a process crash; a power loss may lose
	// the last commits). See BENCHMARKS.md, Admin API, for the cost.
	Synchronous string
}

// Open opens (creating if needed) the SQLite database at path, applies
// pending migrations and refuses a database newer than this binary.
func Open(ctx context.Context, path string, logger *slog.Logger) (*Store, error) {
	return OpenWith(ctx, path, logger, Options{})
}

// OpenWith is Open with Options.
func OpenWith(ctx context.Context, path string, logger *slog.Logger, opt Options) (*Store, error) {
	switch opt.Synchronous {
	case "":
		opt.Synchronous = "FULL"
	case "FULL", "NORMAL":
	default:
		return nil, fmt.Errorf("store: synchronous %q: want FULL or NORMAL", opt.Synchronous)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// Connection settings (go-sqlite3 DSN parameters), each for a reason:
	//   _journal_mode=WAL: readers never block the writer and vice versa.
	//   _foreign_keys=on: SQLite leaves foreign keys off unless asked, per
	//     connection; the schema relies on them.
	//   _busy_timeout: another process (or connection) holding the write
	//     lock makes us wait instead of failing at once.
	//   _txlock=immediate: BEGIN takes the write lock up front, so a
	//     transaction that read first cannot fail at its first write with
	//     SQLITE_BUSY (a deferred transaction cannot be retried by the busy
	//     handler once it holds a read snapshot).
	//   _synchronous=FULL: an acknowledged write survives a power loss, not
	//     only a process crash (NORMAL); measured in BENCHMARKS.md.
	dsn := "file:" + path + "?_journal_mode=WAL&_foreign_keys=on&_busy_timeout=10000&_txlock=immediate&_synchronous=" + opt.Synchronous
	s := &Store{logger: logger, now: time.Now, wmu: &sync.Mutex{}}
	db, err := gorm.Open(sqlite.Open(dsn), &gorm.Config{
		Logger:                 gormlogger.Discard,
		SkipDefaultTransaction: true, // we open our own transactions
		NowFunc:                func() time.Time { return s.now().UTC() },
	})
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	// A few connections for concurrent readers; writers are serialised by wmu.
	sqlDB.SetMaxOpenConns(8)
	sqlDB.SetMaxIdleConns(8)
	sqlDB.SetConnMaxIdleTime(0)
	s.db, s.sqlDB = db, sqlDB
	if err := s.migrate(ctx); err != nil {
		_ = sqlDB.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	p, err := goose.NewProvider(goose.DialectSQLite3, s.sqlDB, migrations.FS)
	if err != nil {
		return fmt.Errorf("store: migrations: %w", err)
	}
	var latest int64
	for _, src := range p.ListSources() {
		latest = max(latest, src.Version)
	}
	current, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("store: schema version: %w", err)
	}
	if current > latest {
		return fmt.Errorf("%w: database at version %d, binary knows up to %d", ErrSchemaTooNew, current, latest)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("store: apply migrations: %w", err)
	}
	for _, r := range results {
		s.logger.Info("store: migration applied", "version", r.Source.Version, "file", r.Source.Path)
	}
	return nil
}

// SchemaVersion returns the highest migration version the binary carries.
func SchemaVersion() int64 {
	entries, _ := fs.Glob(migrations.FS, "*.sql")
	var v int64
	for _, e := range entries {
		var n int64
		if _, err := fmt.Sscanf(e, "%d_", &n); err == nil {
			v = max(v, n)
		}
	}
	return v
}

// Close closes the database.
func (s *Store) Close() error {
	if err := s.sqlDB.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Ping checks that the database answers (for /healthz).
func (s *Store) Ping(ctx context.Context) error {
	if err := s.sqlDB.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// SetClock replaces the clock (tests). Not safe while the store is in use.
func (s *Store) SetClock(now func() time.Time) { s.now = now }

func (s *Store) nowUTC() time.Time { return s.now().UTC() }

// InTx runs fn in one write transaction; the Store passed to fn runs every
// method inside it. If fn returns an error, nothing fn wrote is kept.
func (s *Store) InTx(ctx context.Context, fn func(tx *Store) error) error {
	return s.write(ctx, func(db *gorm.DB) error {
		tx := *s
		tx.db = db
		tx.inTx = true
		return fn(&tx)
	})
}

// write runs fn in a write transaction (or in the current one).
func (s *Store) write(ctx context.Context, fn func(db *gorm.DB) error) error {
	if s.inTx {
		return fn(s.db.WithContext(ctx))
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.db.WithContext(ctx).Transaction(fn)
}

// read returns the handle for queries.
func (s *Store) read(ctx context.Context) *gorm.DB { return s.db.WithContext(ctx) }

// RecordAudit writes one audit entry on its own (for what is not a
// configuration write, such as a login lockout).
func (s *Store) RecordAudit(ctx context.Context, actor, action, target string, detail any) error {
	return s.write(ctx, func(db *gorm.DB) error { return s.audit(db, actor, action, target, nil, detail) })
}

// audit writes one audit entry in the transaction db.
func (s *Store) audit(db *gorm.DB, actor, action, target string, before, after any) error {
	row := auditRow{Time: s.nowUTC(), Actor: actor, Action: action, Target: target, Before: jsonOrEmpty(before), After: jsonOrEmpty(after)}
	if err := db.Create(&row).Error; err != nil {
		return fmt.Errorf("store: audit %s %s: %w", action, target, err)
	}
	return nil
}

func jsonOrEmpty(v any) string {
	if v == nil {
		return ""
	}
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

var constraintRE = regexp.MustCompile(`UNIQUE constraint failed: ([a-z_]+)\.([a-z_]+)`)

// translate maps driver errors to domain errors: UNIQUE → *ConflictError
// naming the field, gorm's not-found → *NotFoundError.
func translate(err error, kind, name string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return domain.NotFound(kind, name)
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch se.ExtendedCode {
		case sqlite3.ErrConstraintUnique, sqlite3.ErrConstraintPrimaryKey:
			field := "name"
			if m := constraintRE.FindStringSubmatch(se.Error()); m != nil && m[2] != "name" {
				field = m[2]
				if field == "cluster" && strings.Contains(se.Error(), ".route") {
					field = "route"
				}
			}
			if field == "name" {
				return domain.Conflict("name", "%s %q already exists", kind, name)
			}
			return domain.Conflict(field, "%s: %s is already in use", kind, field)
		case sqlite3.ErrConstraintForeignKey:
			return domain.Conflict("name", "%s %q is still referenced by other resources", kind, name)
		}
	}
	return fmt.Errorf("store: %s %q: %w", kind, name, err)
}

// DumpRows returns every row of every table (migration bookkeeping and
// other packages' tables included), each rendered as text, in a stable
// order. Tests compare dumps to prove a rejected request changed nothing.
func (s *Store) DumpRows(ctx context.Context) (map[string][]string, error) {
	var tables []string
	if err := s.read(ctx).Raw("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").Scan(&tables).Error; err != nil {
		return nil, fmt.Errorf("store: list tables: %w", err)
	}
	out := map[string][]string{}
	for _, t := range tables {
		rows, err := s.sqlDB.QueryContext(ctx, `SELECT * FROM "`+t+`"`) // t comes from sqlite_master
		if err != nil {
			return nil, fmt.Errorf("store: dump %s: %w", t, err)
		}
		cols, _ := rows.Columns()
		var lines []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				return nil, fmt.Errorf("store: dump %s: %w", t, err)
			}
			parts := make([]string, len(vals))
			for i, v := range vals {
				if b, ok := v.([]byte); ok {
					v = string(b)
				}
				parts[i] = fmt.Sprintf("%s=%v", cols[i], v)
			}
			lines = append(lines, strings.Join(parts, " "))
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("store: dump %s: %w", t, err)
		}
		sort.Strings(lines)
		out[t] = lines
	}
	return out, nil
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
