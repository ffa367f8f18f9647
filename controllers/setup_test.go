package controllers

import (
	"flag"
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestWatchNamespacesOption(t *testing.T) {
	parse := func(t *testing.T, args ...string) Options {
		t.Helper()
		o := DefaultOptions("test")
		fs := flag.NewFlagSet("manager", flag.ContinueOnError)
		o.BindFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return o
	}

	t.Run("unset watches every namespace", func(t *testing.T) {
		o := parse(t)
		if o.WatchNamespaces != nil || o.CacheOptions().DefaultNamespaces != nil {
			t.Errorf("namespaces %v, cache %v", o.WatchNamespaces, o.CacheOptions().DefaultNamespaces)
		}
		if err := o.Validate(); err != nil {
			t.Error(err)
		}
	})
	t.Run("the flag lists the cache's namespaces", func(t *testing.T) {
		o := parse(t, "--watch-namespaces= shop, billing")
		if err := o.Validate(); err != nil {
			t.Fatal(err)
		}
		got := slices.Sorted(maps.Keys(o.CacheOptions().DefaultNamespaces))
		if !slices.Equal(got, []string{"billing", "shop"}) {
			t.Errorf("cache namespaces %v", got)
		}
	})
	t.Run("the environment sets them and the flag overrides it", func(t *testing.T) {
		t.Setenv("PATCHBAY_WATCH_NAMESPACES", "shop")
		if o := parse(t); !slices.Equal(o.WatchNamespaces, []string{"shop"}) {
			t.Errorf("from the environment: %v", o.WatchNamespaces)
		}
		if o := parse(t, "--watch-namespaces=billing"); !slices.Equal(o.WatchNamespaces, []string{"billing"}) {
			t.Errorf("flag over environment: %v", o.WatchNamespaces)
		}
	})
	for _, tc := range []struct{ arg, want string }{
		{"shop,,billing", `watch namespace ""`},
		{"Shop", `watch namespace "Shop"`},
		{"shop,shop", `"shop" is listed twice`},
	} {
		t.Run("refuses "+tc.arg, func(t *testing.T) {
			err := parse(t, "--watch-namespaces="+tc.arg).Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want an error containing %s", err, tc.want)
			}
		})
	}
}
