package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/mxgate/mxgate/internal/config"
)

// DefaultConfigPath is read when neither --config nor $MXGATE_CONFIG names a file, if it exists.
const DefaultConfigPath = "/etc/mxgate/mxgate.toml"

// ConfigEnv is the environment variable naming the configuration file.
const ConfigEnv = "MXGATE_CONFIG"

// environment is what the command line reads of the process environment; tests replace it.
type environment struct {
	getenv        func(string) string
	defaultConfig string
}

func osEnvironment() environment {
	return environment{getenv: os.Getenv, defaultConfig: DefaultConfigPath}
}

// configFile says which configuration file applies: --config, else $MXGATE_CONFIG, else DefaultConfigPath
// when it exists, else none (the built-in defaults). A file named by the flag or the variable must exist.
func (g *globals) configFile() (path, source string, err error) {
	switch {
	case g.configPath != "":
		return g.configPath, "--config", nil
	case g.env.getenv(ConfigEnv) != "":
		return g.env.getenv(ConfigEnv), "$" + ConfigEnv, nil
	}
	if g.env.defaultConfig == "" {
		return "", "", nil
	}
	if _, err := os.Stat(g.env.defaultConfig); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", "", nil
		}
		return "", "", fmt.Errorf("%s: %w", g.env.defaultConfig, err)
	}
	return g.env.defaultConfig, "default", nil
}

// loadConfig loads the configuration file that applies (configFile), or the built-in defaults.
func (g *globals) loadConfig() (*config.Config, string, error) {
	path, source, err := g.configFile()
	if err != nil {
		return nil, "", fmt.Errorf("configuration: %w", err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		if path == "" {
			return nil, "", fmt.Errorf("configuration:\n%w", err)
		}
		return nil, "", fmt.Errorf("configuration %s (from %s):\n%w", path, source, err)
	}
	return cfg, path, nil
}
