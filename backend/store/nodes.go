package store

import (
	"context"
	"fmt"

	"gorm.io/gorm"

	"tandem/backend/domain"
)

// NodeManagers returns every node manager, by name.
func (s *Store) NodeManagers(ctx context.Context) ([]domain.NodeManager, error) {
	var rows []nodeManagerRow
	if err := s.read(ctx).Order("name").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: list node managers: %w", err)
	}
	out := make([]domain.NodeManager, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.domain())
	}
	return out, nil
}

// NodeManager returns the named node manager.
func (s *Store) NodeManager(ctx context.Context, name string) (domain.NodeManager, error) {
	return s.nodeManager(s.read(ctx), name)
}

func (s *Store) nodeManager(db *gorm.DB, name string) (domain.NodeManager, error) {
	var r nodeManagerRow
	if err := db.Where("name = ?", name).Take(&r).Error; err != nil {
		return domain.NodeManager{}, translate(err, "node manager", name)
	}
	return r.domain(), nil
}

// CreateNodeManager validates and inserts n.
func (s *Store) CreateNodeManager(ctx context.Context, actor string, n domain.NodeManager) (domain.NodeManager, error) {
	if err := n.Validate(); err != nil {
		return domain.NodeManager{}, err
	}
	now := s.nowUTC()
	n.CreatedAt, n.UpdatedAt = now, now
	err := s.write(ctx, func(db *gorm.DB) error {
		row := nodeManagerRow{Name: n.Name, Listen: n.Listen, CreatedAt: now, UpdatedAt: now}
		if err := db.Create(&row).Error; err != nil {
			return translate(err, "node manager", n.Name)
		}
		return s.audit(db, actor, "nodemanager.create", "nodemanager/"+n.Name, nil, n)
	})
	if err != nil {
		return domain.NodeManager{}, err
	}
	return n, nil
}

// UpdateNodeManager replaces the named node manager's fields.
func (s *Store) UpdateNodeManager(ctx context.Context, actor string, n domain.NodeManager) (domain.NodeManager, error) {
	if err := n.Validate(); err != nil {
		return domain.NodeManager{}, err
	}
	err := s.write(ctx, func(db *gorm.DB) error {
		before, err := s.nodeManager(db, n.Name)
		if err != nil {
			return err
		}
		n.CreatedAt, n.UpdatedAt = before.CreatedAt, s.nowUTC()
		row := nodeManagerRow{Name: n.Name, Listen: n.Listen, CreatedAt: n.CreatedAt, UpdatedAt: n.UpdatedAt}
		if err := db.Select("*").Save(&row).Error; err != nil {
			return translate(err, "node manager", n.Name)
		}
		return s.audit(db, actor, "nodemanager.update", "nodemanager/"+n.Name, before, n)
	})
	if err != nil {
		return domain.NodeManager{}, err
	}
	return n, nil
}

// DeleteNodeManager deletes the named node manager; one still assigned to
// servers or web servers is a conflict.
func (s *Store) DeleteNodeManager(ctx context.Context, actor, name string) error {
	return s.write(ctx, func(db *gorm.DB) error {
		before, err := s.nodeManager(db, name)
		if err != nil {
			return err
		}
		var n, m int64
		if err := db.Model(&serverRow{}).Where("node_manager = ?", name).Count(&n).Error; err != nil {
			return fmt.Errorf("store: count servers: %w", err)
		}
		if err := db.Model(&webServerRow{}).Where("node_manager = ?", name).Count(&m).Error; err != nil {
			return fmt.Errorf("store: count webservers: %w", err)
		}
		if n+m > 0 {
			return domain.Conflict("name", "node manager %q still supervises %d server(s) and %d web server(s)", name, n, m)
		}
		if err := db.Delete(&nodeManagerRow{}, "name = ?", name).Error; err != nil {
			return translate(err, "node manager", name)
		}
		if err := s.retireCerts(db, actor, name); err != nil {
			return err
		}
		return s.audit(db, actor, "nodemanager.delete", "nodemanager/"+name, before, nil)
	})
}

// WebServers returns every web server, by name; cluster != "" filters.
func (s *Store) WebServers(ctx context.Context, cluster string) ([]domain.WebServer, error) {
	return s.webServers(s.read(ctx), cluster)
}

func (s *Store) webServers(db *gorm.DB, cluster string) ([]domain.WebServer, error) {
	var rows []webServerRow
	q := db.Order("name")
	if cluster != "" {
		q = q.Where("cluster = ?", cluster)
	}
	if err := q.Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store: list webservers: %w", err)
	}
	out := make([]domain.WebServer, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.domain())
	}
	return out, nil
}

// WebServer returns the named web server.
func (s *Store) WebServer(ctx context.Context, name string) (domain.WebServer, error) {
	return s.webServer(s.read(ctx), name)
}

func (s *Store) webServer(db *gorm.DB, name string) (domain.WebServer, error) {
	var r webServerRow
	if err := db.Where("name = ?", name).Take(&r).Error; err != nil {
		return domain.WebServer{}, translate(err, "webserver", name)
	}
	return r.domain(), nil
}

func (s *Store) checkWebServerRefs(db *gorm.DB, w domain.WebServer) error {
	if _, err := s.cluster(db, w.Cluster); err != nil {
		if isNotFound(err) {
			return domain.Invalid("cluster", "cluster %q does not exist", w.Cluster)
		}
		return err
	}
	return s.checkNodeManagerRef(db, w.NodeManager)
}

// CreateWebServer validates and inserts w.
func (s *Store) CreateWebServer(ctx context.Context, actor string, w domain.WebServer) (domain.WebServer, error) {
	if err := w.Validate(); err != nil {
		return domain.WebServer{}, err
	}
	now := s.nowUTC()
	w.CreatedAt, w.UpdatedAt = now, now
	err := s.write(ctx, func(db *gorm.DB) error {
		if err := s.checkWebServerRefs(db, w); err != nil {
			return err
		}
		row := webServerRow{Name: w.Name, Cluster: w.Cluster, Listen: w.Listen, NodeManager: nullable(w.NodeManager), CreatedAt: now, UpdatedAt: now}
		if err := db.Create(&row).Error; err != nil {
			return translate(err, "webserver", w.Name)
		}
		return s.audit(db, actor, "webserver.create", "webserver/"+w.Name, nil, w)
	})
	if err != nil {
		return domain.WebServer{}, err
	}
	return w, nil
}

// UpdateWebServer replaces the named web server's fields.
func (s *Store) UpdateWebServer(ctx context.Context, actor string, w domain.WebServer) (domain.WebServer, error) {
	if err := w.Validate(); err != nil {
		return domain.WebServer{}, err
	}
	err := s.write(ctx, func(db *gorm.DB) error {
		before, err := s.webServer(db, w.Name)
		if err != nil {
			return err
		}
		if err := s.checkWebServerRefs(db, w); err != nil {
			return err
		}
		w.CreatedAt, w.UpdatedAt = before.CreatedAt, s.nowUTC()
		row := webServerRow{Name: w.Name, Cluster: w.Cluster, Listen: w.Listen, NodeManager: nullable(w.NodeManager), CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt}
		if err := db.Select("*").Save(&row).Error; err != nil {
			return translate(err, "webserver", w.Name)
		}
		return s.audit(db, actor, "webserver.update", "webserver/"+w.Name, before, w)
	})
	if err != nil {
		return domain.WebServer{}, err
	}
	return w, nil
}

// DeleteWebServer deletes the named web server.
func (s *Store) DeleteWebServer(ctx context.Context, actor, name string) error {
	return s.write(ctx, func(db *gorm.DB) error {
		before, err := s.webServer(db, name)
		if err != nil {
			return err
		}
		if err := db.Delete(&webServerRow{}, "name = ?", name).Error; err != nil {
			return translate(err, "webserver", name)
		}
		if err := s.retireCerts(db, actor, name); err != nil {
			return err
		}
		return s.audit(db, actor, "webserver.delete", "webserver/"+name, before, nil)
	})
}
