package store

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"

	"tandem/backend/domain"
)

// Users returns every console user, by name.
func (s *Store) Users(ctx context.Context) ([]domain.User, error) {
	var rows []userRow
	if err := s.read(ctx).Order("name").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: list users: %w", err)
	}
	out := make([]domain.User, 0, len(rows))
	for _, r := range rows {
		out = append(out, domain.User{Name: r.Name, Role: r.Role, CreatedAt: r.CreatedAt})
	}
	return out, nil
}

// User returns the named user and its bcrypt password hash.
func (s *Store) User(ctx context.Context, name string) (domain.User, string, error) {
	var r userRow
	if err := s.read(ctx).Where("name = ?", name).Take(&r).Error; err != nil {
		return domain.User{}, "", translate(err, "user", name)
	}
	return domain.User{Name: r.Name, Role: r.Role, CreatedAt: r.CreatedAt}, r.PasswordHash, nil
}

func checkUser(u domain.User) error {
	if err := domain.CheckName("name", u.Name); err != nil {
		return err
	}
	if !domain.ValidRole(u.Role) {
		return domain.Invalid("role", "must be admin, operator or viewer")
	}
	return nil
}

// CreateUser inserts a user with an already hashed password.
func (s *Store) CreateUser(ctx context.Context, actor string, u domain.User, passwordHash string) (domain.User, error) {
	if err := checkUser(u); err != nil {
		return domain.User{}, err
	}
	u.CreatedAt = s.nowUTC()
	err := s.write(ctx, func(db *gorm.DB) error {
		row := userRow{Name: u.Name, Role: u.Role, PasswordHash: passwordHash, CreatedAt: u.CreatedAt}
		if err := db.Create(&row).Error; err != nil {
			return translate(err, "user", u.Name)
		}
		return s.audit(db, actor, "user.create", "user/"+u.Name, nil, u)
	})
	if err != nil {
		return domain.User{}, err
	}
	return u, nil
}

// UpdateUser changes a user's role and, when passwordHash is not empty, its
// password. A password change ends the user's console sessions.
func (s *Store) UpdateUser(ctx context.Context, actor string, u domain.User, passwordHash string) (domain.User, error) {
	if err := checkUser(u); err != nil {
		return domain.User{}, err
	}
	err := s.write(ctx, func(db *gorm.DB) error {
		var r userRow
		if err := db.Where("name = ?", u.Name).Take(&r).Error; err != nil {
			return translate(err, "user", u.Name)
		}
		before := domain.User{Name: r.Name, Role: r.Role, CreatedAt: r.CreatedAt}
		if err := s.keepAnAdmin(db, r.Name, r.Role, u.Role); err != nil {
			return err
		}
		r.Role = u.Role
		if passwordHash != "" {
			r.PasswordHash = passwordHash
			if err := db.Delete(&consoleSessionRow{}, "user = ?", u.Name).Error; err != nil {
				return fmt.Errorf("store: end sessions of %q: %w", u.Name, err)
			}
		}
		if err := db.Select("*").Save(&r).Error; err != nil {
			return translate(err, "user", u.Name)
		}
		u.CreatedAt = r.CreatedAt
		return s.audit(db, actor, "user.update", "user/"+u.Name, before, u)
	})
	if err != nil {
		return domain.User{}, err
	}
	return u, nil
}

// keepAnAdmin refuses to demote or delete the last admin user.
func (s *Store) keepAnAdmin(db *gorm.DB, name, oldRole, newRole string) error {
	if oldRole != domain.RoleAdmin || newRole == domain.RoleAdmin {
		return nil
	}
	var n int64
	if err := db.Model(&userRow{}).Where("role = ? AND name <> ?", domain.RoleAdmin, name).Count(&n).Error; err != nil {
		return fmt.Errorf("store: count admins: %w", err)
	}
	if n == 0 {
		return domain.Conflict("role", "user %q is the last admin", name)
	}
	return nil
}

// DeleteUser deletes a user and its console sessions; the last admin stays.
func (s *Store) DeleteUser(ctx context.Context, actor, name string) error {
	return s.write(ctx, func(db *gorm.DB) error {
		var r userRow
		if err := db.Where("name = ?", name).Take(&r).Error; err != nil {
			return translate(err, "user", name)
		}
		if err := s.keepAnAdmin(db, r.Name, r.Role, ""); err != nil {
			return err
		}
		if err := db.Delete(&userRow{}, "name = ?", name).Error; err != nil {
			return translate(err, "user", name)
		}
		return s.audit(db, actor, "user.delete", "user/"+name, domain.User{Name: r.Name, Role: r.Role, CreatedAt: r.CreatedAt}, nil)
	})
}

// CountUsers returns how many users exist (bootstrap checks for zero).
func (s *Store) CountUsers(ctx context.Context) (int64, error) {
	var n int64
	if err := s.read(ctx).Model(&userRow{}).Count(&n).Error; err != nil {
		return 0, fmt.Errorf("store: count users: %w", err)
	}
	return n, nil
}

// Tokens returns every API token (never a secret), by name.
func (s *Store) Tokens(ctx context.Context) ([]domain.Token, error) {
	var rows []tokenRow
	if err := s.read(ctx).Order("name").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: list tokens: %w", err)
	}
	out := make([]domain.Token, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.domain())
	}
	return out, nil
}

// CountTokens returns how many API tokens exist.
func (s *Store) CountTokens(ctx context.Context) (int64, error) {
	var n int64
	if err := s.read(ctx).Model(&tokenRow{}).Count(&n).Error; err != nil {
		return 0, fmt.Errorf("store: count tokens: %w", err)
	}
	return n, nil
}

// CreateToken stores a token by the hash of its secret.
func (s *Store) CreateToken(ctx context.Context, actor, name, role, hash string) (domain.Token, error) {
	return s.CreateTokenExpiring(ctx, actor, name, role, hash, nil)
}

// MaxTokenLifetime bounds an API token's expiry.
const MaxTokenLifetime = 10 * 365 * 24 * time.Hour

// CreateTokenExpiring is CreateToken with an expiry (nil: never), which
// must be in the future and within MaxTokenLifetime.
func (s *Store) CreateTokenExpiring(ctx context.Context, actor, name, role, hash string, expires *time.Time) (domain.Token, error) {
	if err := domain.CheckName("name", name); err != nil {
		return domain.Token{}, err
	}
	if !domain.ValidRole(role) {
		return domain.Token{}, domain.Invalid("role", "must be admin, operator or viewer")
	}
	now := s.nowUTC()
	if expires != nil {
		e := expires.UTC().Truncate(time.Second)
		if !e.After(now) || e.Sub(now) > MaxTokenLifetime {
			return domain.Token{}, domain.Invalid("expires_at", "must be in the future and within 10 years")
		}
		expires = &e
	}
	row := tokenRow{Name: name, Role: role, Hash: hash, CreatedAt: now, ExpiresAt: expires}
	err := s.write(ctx, func(db *gorm.DB) error {
		if err := db.Create(&row).Error; err != nil {
			return translate(err, "token", name)
		}
		return s.audit(db, actor, "token.create", "token/"+name, nil, row.domain())
	})
	if err != nil {
		return domain.Token{}, err
	}
	return row.domain(), nil
}

// TokenByHash returns the token whose secret hashes to hash.
func (s *Store) TokenByHash(ctx context.Context, hash string) (domain.Token, error) {
	var r tokenRow
	if err := s.read(ctx).Where("hash = ?", hash).Take(&r).Error; err != nil {
		return domain.Token{}, translate(err, "token", "")
	}
	return r.domain(), nil
}

// TouchToken records a token's use, at most once a minute per token, so
// reads do not turn into writes on every request.
func (s *Store) TouchToken(ctx context.Context, id int64) error {
	now := s.nowUTC()
	err := s.read(ctx).Exec("UPDATE tokens SET last_used = ? WHERE id = ? AND (last_used IS NULL OR last_used < ?)",
		now, id, now.Add(-time.Minute)).Error
	if err != nil {
		return fmt.Errorf("store: touch token: %w", err)
	}
	return nil
}

// DeleteToken deletes the named token.
func (s *Store) DeleteToken(ctx context.Context, actor, name string) error {
	return s.write(ctx, func(db *gorm.DB) error {
		var r tokenRow
		if err := db.Where("name = ?", name).Take(&r).Error; err != nil {
			return translate(err, "token", name)
		}
		if err := db.Delete(&tokenRow{}, "id = ?", r.ID).Error; err != nil {
			return translate(err, "token", name)
		}
		return s.audit(db, actor, "token.delete", "token/"+name, r.domain(), nil)
	})
}

// ConsoleSession is a logged-in browser session.
type ConsoleSession struct {
	User      domain.User
	CSRFToken string
	ExpiresAt time.Time
}

// CreateConsoleSession stores a session by the hash of its cookie value.
func (s *Store) CreateConsoleSession(ctx context.Context, hash, user, csrf string, expires time.Time) error {
	return s.write(ctx, func(db *gorm.DB) error {
		// Expired sessions go on every login, so the table stays small.
		if err := db.Delete(&consoleSessionRow{}, "expires_at < ?", s.nowUTC()).Error; err != nil {
			return fmt.Errorf("store: prune sessions: %w", err)
		}
		row := consoleSessionRow{Hash: hash, User: user, CsrfToken: csrf, CreatedAt: s.nowUTC(), ExpiresAt: expires.UTC()}
		if err := db.Create(&row).Error; err != nil {
			return fmt.Errorf("store: create session: %w", err)
		}
		return nil
	})
}

// ConsoleSessionByHash returns the unexpired session with that cookie hash.
func (s *Store) ConsoleSessionByHash(ctx context.Context, hash string) (ConsoleSession, error) {
	var r consoleSessionRow
	if err := s.read(ctx).Where("hash = ? AND expires_at > ?", hash, s.nowUTC()).Take(&r).Error; err != nil {
		return ConsoleSession{}, translate(err, "session", "")
	}
	var u userRow
	if err := s.read(ctx).Where("name = ?", r.User).Take(&u).Error; err != nil {
		return ConsoleSession{}, translate(err, "user", r.User)
	}
	return ConsoleSession{User: domain.User{Name: u.Name, Role: u.Role, CreatedAt: u.CreatedAt}, CSRFToken: r.CsrfToken, ExpiresAt: r.ExpiresAt}, nil
}

// DeleteConsoleSession ends a session (logout); an unknown hash is no error.
func (s *Store) DeleteConsoleSession(ctx context.Context, hash string) error {
	return s.write(ctx, func(db *gorm.DB) error {
		if err := db.Delete(&consoleSessionRow{}, "hash = ?", hash).Error; err != nil {
			return fmt.Errorf("store: delete session: %w", err)
		}
		return nil
	})
}

// Audit returns audit entries newest first; beforeID > 0 pages back, limit
// bounds the page (0: 100).
func (s *Store) Audit(ctx context.Context, beforeID int64, limit int) ([]domain.AuditEntry, error) {
	return s.AuditFiltered(ctx, AuditFilter{BeforeID: beforeID, Limit: limit})
}

// AuditFilter selects audit entries; zero fields do not filter.
type AuditFilter struct {
	BeforeID int64  // only ids below
	Actor    string // exactly this actor
	Resource string // targets starting with this (e.g. "token/" or "token/ci")
	// Since and Until bound the entry's time, both inclusive.
	Since, Until time.Time
	Limit        int // page size (0: 100)
}

// AuditFiltered returns the audit entries f selects, newest first.
func (s *Store) AuditFiltered(ctx context.Context, f AuditFilter) ([]domain.AuditEntry, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	q := s.read(ctx).Order("id DESC").Limit(f.Limit)
	if f.BeforeID > 0 {
		q = q.Where("id < ?", f.BeforeID)
	}
	if f.Actor != "" {
		q = q.Where("actor = ?", f.Actor)
	}
	if f.Resource != "" {
		// A prefix compared as is: no LIKE, so "_" and "%" are plain
		// characters and case counts.
		q = q.Where("substr(target, 1, length(?)) = ?", f.Resource, f.Resource)
	}
	// Times are stored in UTC in one text layout, which sorts as the
	// times do; the bounds are bound in the same layout.
	if !f.Since.IsZero() {
		q = q.Where("time >= ?", f.Since.UTC())
	}
	if !f.Until.IsZero() {
		q = q.Where("time <= ?", f.Until.UTC())
	}
	var rows []auditRow
	if err := q.Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: list audit: %w", err)
	}
	out := make([]domain.AuditEntry, 0, len(rows))
	for _, r := range rows {
		out = append(out, domain.AuditEntry{ID: r.ID, Time: r.Time, Actor: r.Actor, Action: r.Action, Target: r.Target, Before: r.Before, After: r.After})
	}
	return out, nil
}
