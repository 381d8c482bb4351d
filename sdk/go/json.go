package butter

import (
	"encoding/json"
	"fmt"
)

func jsonUnmarshal(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("worker protocol: bad JSON payload: %w", err)
	}
	return nil
}
