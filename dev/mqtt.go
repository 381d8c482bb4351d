package dev

import (
	"maps"

	"github.com/butterfn/butter/connectors/mqtt"
	"github.com/butterfn/butter/plugins/pool"
)

// useEmbeddedMQTT gives each MQTT connector of cfg that declares no
// address the embedded MQTT broker's, starting the broker the first time
// one needs it; it runs until butter dev stops, across redeploys, so that
// devices keep their address. Called from startPool, under deployMu.
func (d *env) useEmbeddedMQTT(cfg *pool.Config) error {
	for i := range cfg.Functions {
		f := &cfg.Functions[i]
		if (f.Runtime != "source.mqtt" && f.Runtime != "sink.mqtt") || f.Options[mqtt.OptAddress] != "" {
			continue
		}
		if d.mqtt == nil {
			b, err := mqtt.StartBroker("127.0.0.1", d.mqttPort, d.log.Named("mqtt"))
			if err != nil {
				return err
			}
			d.mqtt = b
			d.ui.Output("==> embedded MQTT broker on " + b.URL + " (connectors without an address use it)")
		}
		opts := maps.Clone(f.Options)
		if opts == nil {
			opts = map[string]string{}
		}
		opts[mqtt.OptAddress] = d.mqtt.URL
		f.Options = opts
	}
	return nil
}
