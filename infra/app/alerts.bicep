// Alerts, wired to an optional e-mail action group (no e-mail = alerts still fire
// and show in the portal, but notify no one).
//
//  1. Dead-lettered messages on the trigger queue > 0   (metric alert, Service Bus)
//  2. Failed function invocations                        (metric alert, App Insights
//     `requests/failed`: each Service Bus-triggered invocation is a request)
//  3. Batch throttling seen by the function              (log alert on App Insights)
//     Reads the handler's one log line per delivery (handlers/handler.py `_log`):
//       job-update outcome=<outcome|transient> jobId=... httpStatus=<n> errorCode=...
//     which the Python worker forwards as a `traces` row with that text as `message`.
//     It also matches a custom dimension `httpStatus` == "429" (traces or
//     customEvents), in case the handler moves to structured telemetry. It counts
//     DELIVERIES THAT ENDED on a 429 (retry budget spent: outcome=transient or
//     given-up), not every throttled attempt that a later retry recovered from.

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

@description('Deliveries that ended on a Batch 429 in 15 minutes above which alert 3 fires.')
@minValue(0)
param batchThrottleThreshold int = 0

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

// One row per delivery whose last Batch answer was 429.
var throttleQuery = '''
union isfuzzy=true traces, customEvents
| extend httpStatus = tostring(customDimensions.httpStatus)
| where httpStatus == "429" or message matches regex @'httpStatus[=:] ?"?429\b'
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
          timeAggregation: 'Count'
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
    // The rule is created before the function has logged anything.
    skipQueryValidation: true
    actions: {
      actionGroups: logActionGroups
    }
  }
}

output actionGroupId string = empty(alertEmail) ? '' : actionGroup.id
