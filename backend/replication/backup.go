package replication

import (
	"sort"

	"tandem/backend/domain"
	"tandem/backend/wire"
)

// ChooseBackup picks self's backup among members. ring: the next live
// server after self in name order (wrapping); explicit: self's configured
// backup when it is live, else the ring choice. It returns "" when no other
// member is live. live must not be called with self.
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
	names := make([]string, 0, len(members))
	for _, m := range members {
		names = append(names, m.Name)
	}
	sort.Strings(names)
	start := sort.Search(len(names), func(i int) bool { return names[i] > self })
	for i := 0; i < len(names); i++ {
		n := names[(start+i)%len(names)]
		if n != self && live(n) {
			return n
		}
	}
	return ""
}
