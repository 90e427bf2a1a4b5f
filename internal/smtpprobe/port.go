package smtpprobe

import (
	"context"
	"net/netip"
)

// ProbeAt is Probe at another TCP port than p.Port: an explicit next hop
// ("[gw.example]:2525", a transport_maps or relayhost destination) is probed at its
// own port.
func (p *Prober) ProbeAt(ctx context.Context, ip netip.Addr, port int, sni string) Result {
	q := *p
	q.Port = port
	return q.Probe(ctx, ip, sni)
}
