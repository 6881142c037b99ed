package config

import (
	"fmt"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"

	"herald/app/access"
)

// YAML renders c as a config file that Parse reads back to c: every
// key, sections in order, durations with units.
func (c Config) YAML() string {
	var b strings.Builder
	writeYAML(&b, reflect.ValueOf(c), "")
	return b.String()
}

func writeYAML(b *strings.Builder, v reflect.Value, indent string) {
	t := v.Type()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		field := v.Field(i)
		if field.Kind() == reflect.Struct && field.Type() != durationType {
			fmt.Fprintf(b, "%s%s:\n", indent, name)
			writeYAML(b, field, indent+"  ")
			continue
		}
		if field.Kind() == reflect.Slice && field.Type().Elem().Kind() == reflect.Struct && field.Len() > 0 {
			fmt.Fprintf(b, "%s%s:\n", indent, name)
			for j := range field.Len() {
				// The item's first key follows its dash; the rest line up under it.
				var item strings.Builder
				writeYAML(&item, field.Index(j), indent+"    ")
				fmt.Fprintf(b, "%s  - %s", indent, strings.TrimPrefix(item.String(), indent+"    "))
			}
			continue
		}
		fmt.Fprintf(b, "%s%s: %s\n", indent, name, yamlScalar(field))
	}
}

func yamlScalar(v reflect.Value) string {
	switch {
	case v.Type() == durationType:
		return formatDuration(time.Duration(v.Int()))
	case v.Kind() == reflect.String:
		return strconv.Quote(v.String()) // a YAML double-quoted scalar too
	case v.Kind() == reflect.Slice:
		items := make([]string, v.Len())
		for i := range items {
			items[i] = yamlScalar(v.Index(i))
		}
		return "[" + strings.Join(items, ", ") + "]"
	}
	return fmt.Sprint(v.Interface())
}

// Redacted returns c with its secrets replaced, for printing. Where a
// secret is read from (env:NAME, file:PATH) is shown.
func (c Config) Redacted() Config {
	c.Security.Tokens = append([]access.TokenConfig(nil), c.Security.Tokens...)
	secrets := []*string{&c.Security.PublishToken, &c.Security.SubscribeToken, &c.Security.AdminToken, &c.Security.JWT.Secret,
		&c.Redis.Password, &c.Redis.SentinelPassword}
	for i := range c.Security.Tokens {
		secrets = append(secrets, &c.Security.Tokens[i].Secret)
	}
	for _, secret := range secrets {
		if *secret != "" && !access.IsSecretReference(*secret) {
			*secret = "(set)"
		}
	}
	if u, err := url.Parse(c.Redis.URL); err == nil && u.User != nil {
		if _, hasPassword := u.User.Password(); hasPassword {
			u.User = url.UserPassword(u.User.Username(), "(set)")
			c.Redis.URL = u.String()
		}
	}
	return c
}

// formatDuration writes 24h rather than Go's 24h0m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
