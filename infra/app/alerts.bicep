// Alerts, wired to an optional e-mail action group (no e-mail = alerts still fire
// and show in the portal, but notify no one).
//
//  1. Dead-lettered messages on the trigger queue > 0   (metric alert, Service Bus)
//  2. Failed function invocations                        (metric alert, App Insights
//     `requests/failed`: each Service Bus-triggered invocation is a request)
//  3. Batch throttling seen by the function              (log alert on App Insights)
//  4. Outcome events that could not be published          (log alert on App Insights)
//     3 and 4 read the handler's OpenTelemetry metrics (handlers/telemetry.py, exported by
//     the worker's Azure Monitor distro to the `customMetrics` table; attributes are
//     `customDimensions`), not log text: 3 sums `jobupdate.batch.responses` with
//     `http.response.status_code` 429 (EVERY throttled Batch attempt, including those a
//     retry recovered from), 4 sums `jobupdate.publish.failures`.
//     tests/infra/test_alert_contract.py checks these names against the telemetry module.

@description('Prefix of the alert names.')
param namePrefix string

@description('Tags for the alert resources.')
param tags object = {}

@description('E-mail address that receives alerts. Empty: no action group is created.')
param alertEmail string = ''

@description('Location of the log alert (the App Insights region).')
param location string

param serviceBusNamespaceId string
param queueName string
param applicationInsightsId string

@description('Failed invocations in 5 minutes above which alert 2 fires.')
@minValue(0)
param failedInvocationsThreshold int = 0

@description('Batch 429 responses (every throttled attempt) in 15 minutes above which alert 3 fires.')
@minValue(0)
param batchThrottleThreshold int = 0

@description('Failed outcome-event publishes in 15 minutes above which alert 4 fires.')
@minValue(0)
param publishFailureThreshold int = 0

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-${namePrefix}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: take('jobupd${uniqueString(namePrefix)}', 12)
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var metricActions = empty(alertEmail) ? [] : [
  {
    actionGroupId: actionGroup.id
  }
]

var logActionGroups = empty(alertEmail) ? [] : [
  actionGroup.id
]

resource deadLetterAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-${namePrefix}-deadletter'
  location: 'global'
  tags: tags
  properties: {
    description: 'Messages were dead-lettered on the job update queue: each is a request that was not applied (invalid, or transient failures until maxDeliveryCount). Inspect the DLQ.'
    severity: 2
    enabled: true
    scopes: [
      serviceBusNamespaceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'DeadletteredMessages'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'DeadletteredMessages'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                queueName
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Maximum'
        }
      ]
    }
    actions: metricActions
  }
}

resource failedInvocationsAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-${namePrefix}-function-failures'
  location: 'global'
  tags: tags
  properties: {
    description: 'Function invocations failed (an exception left the function: the message is abandoned and redelivered).'
    severity: 2
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'FailedRequests'
          metricNamespace: 'microsoft.insights/components'
          metricName: 'requests/failed'
          operator: 'GreaterThan'
          threshold: failedInvocationsThreshold
          timeAggregation: 'Count'
        }
      ]
    }
    actions: metricActions
  }
}

// One row per exported data point of the 429 count; the rule sums `throttled`.
var throttleQuery = '''
customMetrics
| where name == "jobupdate.batch.responses"
| where tostring(customDimensions["http.response.status_code"]) == "429"
| project timestamp, throttled = valueSum
'''

// One row per exported data point of the publish-failure count; the rule sums `failures`.
var publishFailureQuery = '''
customMetrics
| where name == "jobupdate.publish.failures"
| project timestamp, failures = valueSum
'''

resource batchThrottleAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-${namePrefix}-batch-throttling'
  location: location
  tags: tags
  properties: {
    displayName: 'Batch throttling (HTTP 429) seen by the job update function'
    description: 'The Batch account answered 429 TooManyRequests. Occasional 429s are retried within BATCH_RETRY_BUDGET_SECONDS; sustained ones end as given-up outcomes and dead letters.'
    severity: 3
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: throttleQuery
          timeAggregation: 'Total'
          metricMeasureColumn: 'throttled'
          operator: 'GreaterThan'
          threshold: batchThrottleThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    // The rule is created before the function has emitted its first metric.
    skipQueryValidation: true
    actions: {
      actionGroups: logActionGroups
    }
  }
}

resource publishFailureAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-${namePrefix}-publish-failures'
  location: location
  tags: tags
  properties: {
    displayName: 'Outcome events not published by the job update function'
    description: 'Publishing an outcome event to the topic failed. Before the last delivery the message is redelivered and the event republished; on the last delivery it may be dead-lettered without its event (docs/runbook.md).'
    severity: 2
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: publishFailureQuery
          timeAggregation: 'Total'
          metricMeasureColumn: 'failures'
          operator: 'GreaterThan'
          threshold: publishFailureThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    // The rule is created before the function has emitted its first metric.
    skipQueryValidation: true
    actions: {
      actionGroups: logActionGroups
    }
  }
}

output actionGroupId string = empty(alertEmail) ? '' : actionGroup.id
