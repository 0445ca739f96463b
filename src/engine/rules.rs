//! The storm rules of contract section 3 as data: each is a threshold on reply-alls, deliveries
//! and distinct senders over one window. Evaluation picks the highest severity that holds and,
//! within it, the first rule in contract order; the rules list is kept in that order.

use super::settings::millis;
use super::window::{ReplyWindows, WindowStats};
use crate::alert::{RuleName, Severity};
use crate::config::RulesConfig;
use crate::timefmt::Millis;

/// One enabled rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Which rule.
    pub name: RuleName,
    /// Its severity.
    pub severity: Severity,
    /// Reply-alls needed.
    pub min_replies: u64,
    /// Deliveries needed.
    pub min_deliveries: u64,
    /// Distinct senders needed.
    pub min_senders: u64,
    /// Index of its window width in [`RuleSet::widths`].
    pub window: usize,
}

impl Rule {
    /// Whether the rule holds on these window aggregates.
    pub fn holds(&self, stats: &WindowStats) -> bool {
        stats.reply_alls >= self.min_replies.max(1)
            && stats.deliveries >= self.min_deliveries
            && stats.distinct_senders >= self.min_senders
    }
}

/// The alert statistics window: always 60 minutes, whatever the rules say (contract section 4).
pub const ALERT_WINDOW: Millis = 60 * 60_000;

/// The enabled rules and the distinct window widths they need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    /// Enabled rules, criticals first, each severity in contract order.
    pub rules: Vec<Rule>,
    /// Distinct widths; index 0 is the alert window.
    pub widths: Vec<Millis>,
}

impl RuleSet {
    /// Builds the rule set from the configuration, skipping disabled rules.
    pub fn from_config(config: &RulesConfig) -> Self {
        let mut widths = vec![ALERT_WINDOW];
        let mut width_index = |width: Millis| match widths.iter().position(|&w| w == width) {
            Some(i) => i,
            None => {
                widths.push(width);
                widths.len() - 1
            }
        };
        let mut rules = Vec::new();
        let e = &config.exchange;
        if e.enabled {
            rules.push(Rule {
                name: RuleName::Exchange,
                severity: Severity::Critical,
                min_replies: e.min_replies,
                min_deliveries: 0,
                min_senders: 0,
                window: width_index(millis(e.window)),
            });
        }
        let a = &config.amplification;
        if a.enabled {
            rules.push(Rule {
                name: RuleName::Amplification,
                severity: Severity::Critical,
                min_replies: 1,
                min_deliveries: a.deliveries,
                min_senders: a.min_senders,
                window: width_index(millis(a.window)),
            });
        }
        let w = &config.early;
        if w.enabled {
            rules.push(Rule {
                name: RuleName::Early,
                severity: Severity::Warning,
                min_replies: w.min_replies,
                min_deliveries: 0,
                min_senders: w.min_senders,
                window: width_index(millis(w.window)),
            });
        }
        let s = &config.sustained;
        if s.enabled {
            rules.push(Rule {
                name: RuleName::Sustained,
                severity: Severity::Warning,
                min_replies: 1,
                min_deliveries: s.deliveries,
                min_senders: s.min_senders,
                window: width_index(millis(s.window)),
            });
        }
        Self { rules, widths }
    }

    /// The first rule (highest severity, then contract order) that holds on these windows,
    /// considering only rules of at least `floor` severity.
    pub fn first_holding(&self, windows: &ReplyWindows, floor: Severity) -> Option<&Rule> {
        self.rules
            .iter()
            .filter(|rule| rule.severity >= floor)
            .find(|rule| rule.holds(&windows.stats(rule.window)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::window::ReplyAll;

    const MIN: Millis = 60_000;

    fn windows_with(rules: &RuleSet, entries: &[(i64, u64, u64)], now: Millis) -> ReplyWindows {
        let mut w = ReplyWindows::new(&rules.widths, 1000);
        for &(at, recipients, sender) in entries {
            w.insert(
                ReplyAll {
                    at,
                    recipients,
                    sender,
                },
                now,
            );
        }
        w
    }

    #[test]
    fn default_rules_in_contract_order_with_shared_widths() {
        let set = RuleSet::from_config(&RulesConfig::default());
        let names: Vec<_> = set.rules.iter().map(|r| r.name).collect();
        assert_eq!(
            names,
            [
                RuleName::Exchange,
                RuleName::Amplification,
                RuleName::Early,
                RuleName::Sustained
            ]
        );
        assert_eq!(set.widths, vec![60 * MIN, 10 * MIN]);
    }

    #[test]
    fn exchange_nine_is_not_ten() {
        let set = RuleSet::from_config(&RulesConfig::default());
        let nine: Vec<_> = (0..9).map(|i| (i * MIN, 2500, 1)).collect();
        let w = windows_with(&set, &nine, 9 * MIN);
        assert_eq!(set.first_holding(&w, Severity::Warning), None);
        let ten: Vec<_> = (0..10).map(|i| (i * MIN, 2500, 1)).collect();
        let w = windows_with(&set, &ten, 10 * MIN);
        assert_eq!(
            set.first_holding(&w, Severity::Warning).map(|r| r.name),
            Some(RuleName::Exchange)
        );
    }

    #[test]
    fn critical_beats_warning_and_floor_filters() {
        let set = RuleSet::from_config(&RulesConfig::default());
        // Three senders, 1.2M deliveries: early (warning), amplification and sustained hold.
        let w = windows_with(
            &set,
            &[(0, 400_000, 1), (MIN, 400_000, 2), (2 * MIN, 400_000, 3)],
            2 * MIN,
        );
        assert_eq!(
            set.first_holding(&w, Severity::Warning).map(|r| r.name),
            Some(RuleName::Amplification)
        );
        let w = windows_with(
            &set,
            &[(0, 3000, 1), (MIN, 3000, 2), (2 * MIN, 3000, 3)],
            2 * MIN,
        );
        assert_eq!(
            set.first_holding(&w, Severity::Warning).map(|r| r.name),
            Some(RuleName::Early)
        );
        assert_eq!(set.first_holding(&w, Severity::Critical), None);
    }

    #[test]
    fn volume_rules_need_two_senders_and_their_threshold() {
        let set = RuleSet::from_config(&RulesConfig::default());
        let one_sender = windows_with(&set, &[(0, 600_000, 1), (MIN, 600_000, 1)], MIN);
        assert_eq!(set.first_holding(&one_sender, Severity::Warning), None);
        let sustained = windows_with(&set, &[(0, 125_000, 1), (MIN, 125_000, 2)], MIN);
        assert_eq!(
            set.first_holding(&sustained, Severity::Warning)
                .map(|r| r.name),
            Some(RuleName::Sustained)
        );
        let below = windows_with(&set, &[(0, 124_999, 1), (MIN, 125_000, 2)], MIN);
        assert_eq!(set.first_holding(&below, Severity::Warning), None);
    }

    #[test]
    fn disabled_rules_are_not_evaluated() {
        let mut config = RulesConfig::default();
        config.amplification.enabled = false;
        config.exchange.enabled = false;
        let set = RuleSet::from_config(&config);
        let w = windows_with(&set, &[(0, 600_000, 1), (MIN, 600_000, 2)], MIN);
        assert_eq!(
            set.first_holding(&w, Severity::Warning).map(|r| r.name),
            Some(RuleName::Sustained)
        );
    }
}
