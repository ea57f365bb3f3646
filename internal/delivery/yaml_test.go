package delivery_test

import (
	"bytes"
	"os"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/stepgate/stepgate/internal/delivery"
	"github.com/stepgate/stepgate/internal/notify"
	"github.com/stepgate/stepgate/internal/store"
)

// The documented example decodes strictly (every key is a field) over
// the defaults.
func TestExampleConfigDecodes(t *testing.T) {
	raw, err := os.ReadFile("../../testdata/delivery/delivery.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Delivery delivery.Config `yaml:"delivery"`
	}
	doc.Delivery = delivery.DefaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	c := doc.Delivery
	if c.Codes.Lifetime != 10*time.Minute || c.Codes.MinInterval != time.Minute || c.Email.SMTP.Port != 587 ||
		*c.Email.Retries != 2 || c.SMS.Webhook.SignatureHeader != notify.DefaultSignatureHeader ||
		len(c.Methods) != 2 || c.Methods[1] != store.MethodSMS || c.Alerts != notify.DefaultAlerts {
		t.Fatalf("decoded %+v", c)
	}
}
