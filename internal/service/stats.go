package service

import (
	"context"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/access"
	"github.com/maxloyalty/notify/internal/broker"
)

// cluster is a broker that knows the other nodes: each node announces its
// stats with a time to live, and the live announcements are the cluster.
type cluster interface {
	Announce(ctx context.Context, id string, data []byte, ttl time.Duration) error
	Nodes(ctx context.Context) ([][]byte, error)
}

// NodeStats describes this node now.
func (s *Service) NodeStats() *notifyv1.NodeStats {
	st := s.hub.Stats()
	return &notifyv1.NodeStats{
		ServerId:       s.cfg.ServerID,
		ConnectedUsers: int64(st.Users),
		Streams:        st.Subscribers,
		Rooms:          int64(st.Rooms),
		UpdateTime:     timestamppb.New(s.now()),
	}
}

// Announce publishes this node's stats to the cluster, when the broker is
// shared; ttl should be a few announcement periods.
func (s *Service) Announce(ctx context.Context, ttl time.Duration) error {
	c, ok := s.broker.(cluster)
	if !ok {
		return nil
	}
	b, err := proto.Marshal(s.NodeStats())
	if err != nil {
		return err
	}
	return c.Announce(ctx, s.cfg.ServerID, b, ttl)
}

// GetStats implements NotificationService.GetStats.
func (s *Service) GetStats(ctx context.Context, _ *notifyv1.GetStatsRequest) (*notifyv1.GetStatsResponse, error) {
	c, err := claims(ctx)
	if err != nil {
		return nil, toStatusErr(err)
	}
	if err := access.CanViewStats(c); err != nil {
		return nil, toStatusErr(err)
	}
	self := s.NodeStats()
	out := &notifyv1.GetStatsResponse{Node: self, Nodes: []*notifyv1.NodeStats{self}}
	if cl, ok := s.broker.(cluster); ok {
		raw, err := cl.Nodes(ctx)
		if err != nil {
			return nil, toStatusErr(err)
		}
		for _, b := range raw {
			var n notifyv1.NodeStats
			if proto.Unmarshal(b, &n) != nil || n.ServerId == self.ServerId {
				continue // this node is counted live, not from its last report
			}
			out.Nodes = append(out.Nodes, &n)
		}
	}
	out.Cluster = &notifyv1.NodeStats{ServerId: "cluster", UpdateTime: self.UpdateTime}
	for _, n := range out.Nodes {
		out.Cluster.ConnectedUsers += n.ConnectedUsers
		out.Cluster.Streams += n.Streams
		out.Cluster.Rooms += n.Rooms
	}
	return out, nil
}

var _ cluster = (*broker.Redis)(nil)
