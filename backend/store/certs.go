package store

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// RecordCert notes a certificate the domain CA issued to a node, with its
// audit entry (action: node.enrol or node.renew, by the node itself).
func (s *Store) RecordCert(ctx context.Context, action, node, kind, serial string, notAfter time.Time) error {
	return s.write(ctx, func(db *gorm.DB) error {
		if err := db.Exec(`INSERT INTO node_certs (serial, node, kind, issued_at, not_after) VALUES (?, ?, ?, ?, ?)`,
			serial, node, kind, s.nowUTC(), notAfter.UTC()).Error; err != nil {
			return fmt.Errorf("store: record certificate of %s: %w", node, err)
		}
		return s.audit(db, "node:"+node, action, kind+"/"+node, nil, map[string]any{"serial": serial, "not_after": notAfter})
	})
}

// CertRevoked reports whether the certificate with serial was revoked, or
// was never issued by this domain's admin server (both are refused).
func (s *Store) CertRevoked(ctx context.Context, serial string) (bool, error) {
	var row struct {
		N       int
		Revoked int
	}
	if err := s.read(ctx).Raw(`SELECT COUNT(*) AS n, COALESCE(SUM(revoked_at IS NOT NULL), 0) AS revoked FROM node_certs WHERE serial = ?`, serial).Scan(&row).Error; err != nil {
		return true, fmt.Errorf("store: certificate %s: %w", serial, err)
	}
	return row.N == 0 || row.Revoked > 0, nil
}

// RevokeNodeCerts revokes every certificate of the node (audited) and
// returns how many were still valid.
func (s *Store) RevokeNodeCerts(ctx context.Context, actor, node string) (int64, error) {
	var n int64
	err := s.write(ctx, func(db *gorm.DB) error {
		r := db.Exec(`UPDATE node_certs SET revoked_at = ? WHERE node = ? AND revoked_at IS NULL`, s.nowUTC(), node)
		if r.Error != nil {
			return fmt.Errorf("store: revoke certificates of %s: %w", node, r.Error)
		}
		n = r.RowsAffected
		return s.audit(db, actor, "node.revoke", "node/"+node, nil, map[string]any{"certificates": n})
	})
	return n, err
}

// RevokedSerials lists the revoked certificates that have not expired yet
// (what nodes must refuse).
func (s *Store) RevokedSerials(ctx context.Context) ([]string, error) {
	var out []string
	if err := s.read(ctx).Raw(`SELECT serial FROM node_certs WHERE revoked_at IS NOT NULL AND not_after > ? ORDER BY serial`, s.nowUTC()).Scan(&out).Error; err != nil {
		return nil, fmt.Errorf("store: revoked certificates: %w", err)
	}
	return out, nil
}

// NodeBlocked reports whether the node had a certificate revoked and was
// not allowed back since: it may not enrol with the node token.
func (s *Store) NodeBlocked(ctx context.Context, node string) (bool, error) {
	var n int
	if err := s.read(ctx).Raw(`SELECT COUNT(*) FROM node_certs WHERE node = ? AND revoked_at IS NOT NULL AND allowed_at IS NULL`, node).Scan(&n).Error; err != nil {
		return true, fmt.Errorf("store: certificates of %s: %w", node, err)
	}
	return n > 0, nil
}

// AllowNode lets a revoked node enrol again (audited). Its revoked
// certificates stay revoked: the admin server and the peers keep refusing
// them (a stolen one included) until they expire.
func (s *Store) AllowNode(ctx context.Context, actor, node string) (int64, error) {
	var n int64
	err := s.write(ctx, func(db *gorm.DB) error {
		r := db.Exec(`UPDATE node_certs SET allowed_at = ? WHERE node = ? AND revoked_at IS NOT NULL AND allowed_at IS NULL`, s.nowUTC(), node)
		if r.Error != nil {
			return fmt.Errorf("store: allow %s: %w", node, r.Error)
		}
		n = r.RowsAffected
		return s.audit(db, actor, "node.allow", "node/"+node, nil, map[string]any{"revoked_certificates": n})
	})
	return n, err
}

// retireCerts revokes the certificates of a deleted node, in the delete's
// transaction (audited): they are refused everywhere from the next
// revocations on, and a new node of that name may enrol.
func (s *Store) retireCerts(db *gorm.DB, actor, node string) error {
	now := s.nowUTC()
	r := db.Exec(`UPDATE node_certs SET revoked_at = COALESCE(revoked_at, ?), allowed_at = COALESCE(allowed_at, ?) WHERE node = ? AND (revoked_at IS NULL OR allowed_at IS NULL)`, now, now, node)
	if r.Error != nil {
		return fmt.Errorf("store: revoke certificates of %s: %w", node, r.Error)
	}
	if r.RowsAffected == 0 {
		return nil
	}
	return s.audit(db, actor, "node.revoke", "node/"+node, nil, map[string]any{"certificates": r.RowsAffected, "reason": "node deleted"})
}
