package lease

import (
	"slices"

	leasev1 "github.com/ftp-pooler/ftp-pooler/gen/ftppooler/lease/v1"
)

// An SFTP endpoint's host key is what its agents' pool reports say their
// last connection was made with. Agents may disagree (a key rotated while
// some still hold connections made before, or several servers behind one
// address): every distinct key is shown, so the disagreement is seen in
// ListEndpoints rather than hidden behind the latest report.

// hostKeys are the host keys the agents report for an endpoint, each once,
// in the order of their streams; none for FTP and local endpoints.
func (c *connections) hostKeys(endpoint string) []string {
	var keys []string
	for _, sess := range *c.sessions {
		if p := sess.pool[endpoint]; p != nil && p.HostKey != "" && !slices.Contains(keys, p.HostKey) {
			keys = append(keys, p.HostKey)
		}
	}
	return keys
}

// checkHostKey warns when an agent reports a host key that no agent
// reported for the endpoint while another was known: the server offers a
// key it did not before, which the endpoint's known_hosts_file or
// host_key_fingerprint let through. Only a report whose key differs from
// the agent's previous one is compared with the others, so the check costs
// nothing while keys stay put. It runs before the report is recorded.
func (c *connections) checkHostKey(sess *Session, p *leasev1.EndpointPool) {
	key := p.HostKey
	if key == "" {
		return
	}
	if old := sess.pool[p.EndpointId]; old != nil && old.HostKey == key {
		return
	}
	known := c.hostKeys(p.EndpointId)
	if len(known) == 0 || slices.Contains(known, key) {
		return
	}
	c.logger.Warn("SFTP host key changed: the server offers a key no agent reported before",
		"endpoint", p.EndpointId, "agent_id", sess.agentID, "host_key", key, "previous", known)
}
