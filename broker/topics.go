package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Topic is a topic to create.
type Topic struct {
	Name       string
	Partitions int
	// Retention is retention.ms; 0 keeps the broker's default.
	Retention time.Duration
	// Compact sets cleanup.policy=compact; with AlsoDelete,
	// compact,delete: records past Retention go too.
	Compact, AlsoDelete bool
}

// EnsureTopics creates the topics that do not exist yet. It is idempotent:
// an existing topic is left as it is.
func EnsureTopics(ctx context.Context, adm *kadm.Client, topics []Topic) error {
	for _, t := range topics {
		cfg := map[string]*string{}
		if t.Retention > 0 {
			cfg["retention.ms"] = kadm.StringPtr(strconv.FormatInt(t.Retention.Milliseconds(), 10))
		}
		if t.Compact {
			cfg["cleanup.policy"] = kadm.StringPtr("compact")
			if t.AlsoDelete {
				cfg["cleanup.policy"] = kadm.StringPtr("compact,delete")
			}
		}
		parts := int32(max(t.Partitions, 1))
		resp, err := adm.CreateTopic(ctx, parts, -1, cfg, t.Name)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", t.Name, err)
		}
	}
	return nil
}
