package replication

import (
	"sort"

	"tandem/backend/domain"
	"tandem/backend/wire"
)

// ChooseBackup picks self's backup among members. ring: a live server on
// another machine (Member.Host) when there is one, so that losing a whole
// host leaves a copy of every session; among those, the servers of one host
// spread over the other host's servers in name order (the k-th server of a
// host takes the k-th candidate after it), and with no other machine live
// it is the next live server after self in name order (wrapping).
// explicit: self's configured backup when it is live, else the ring
// choice. It returns "" when no other member is live. live must not be
// called with self.
func ChooseBackup(policy, self string, members []wire.Member, live func(name string) bool) string {
	if policy == domain.BackupExplicit {
		for _, m := range members {
			if m.Name == self && m.Backup != "" && m.Backup != self && live(m.Backup) {
				for _, o := range members {
					if o.Name == m.Backup {
						return m.Backup
					}
				}
			}
		}
	}
	sorted := append([]wire.Member(nil), members...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	host := ""
	for _, m := range sorted {
		if m.Name == self {
			host = m.Host
		}
	}
	// rank: self's place among its host's servers (name order).
	rank := 0
	for _, m := range sorted {
		if m.Name < self && host != "" && m.Host == host {
			rank++
		}
	}
	start := sort.Search(len(sorted), func(i int) bool { return sorted[i].Name > self })
	var elsewhere []string
	first := ""
	for i := 0; i < len(sorted); i++ {
		m := sorted[(start+i)%len(sorted)]
		if m.Name == self || !live(m.Name) {
			continue
		}
		if first == "" {
			first = m.Name
		}
		if host != "" && m.Host != "" && m.Host != host {
			elsewhere = append(elsewhere, m.Name)
		}
	}
	if len(elsewhere) > 0 {
		return elsewhere[rank%len(elsewhere)]
	}
	return first
}
